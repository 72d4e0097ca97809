"""``audit list``: the audit log, filtered as the admin API filters it."""

from __future__ import annotations

import json

import click
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.audit import AuditFilter, list_audit_events
from license_server.auth.schemas import AuditEventOut
from license_server.cli.common import emit_list, json_option, parse_timestamp, run_with_session, timestamp_text
from license_server.runtime import Runtime

_filter = click.option  # every filter is an optional exact match, as on GET /v1/admin/audit-events


@click.group()
def audit() -> None:
    """The audit log: who changed what, when."""


@audit.command("list")
@_filter("--actor", "actor_name", default=None, help="e.g. cli, or a token's name.")
@_filter("--action", default=None, help="e.g. license.suspend.")
@_filter("--target-type", default=None, help="e.g. license.")
@_filter("--target-id", default=None)
@_filter("--since", default=None, help="RFC 3339 timestamp with offset, or a date.")
@_filter("--until", default=None, help="RFC 3339 timestamp with offset, or a date.")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@json_option
def list_audit(
    actor_name: str | None,
    action: str | None,
    target_type: str | None,
    target_id: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    """Audit events, newest first."""
    filters = AuditFilter(
        actor=actor_name,
        action=action,
        target_type=target_type,
        target_id=target_id,
        since=parse_timestamp(since, "since"),
        until=parse_timestamp(until, "until"),
    )

    async def work(_: Runtime, session: AsyncSession) -> tuple[list[AuditEventOut], int]:
        rows, total = await list_audit_events(session, filters=filters, limit=limit, offset=offset)
        return [AuditEventOut.model_validate(r) for r in rows], total

    rows, total = run_with_session(work, as_json=as_json)
    emit_list(
        rows,
        as_json=as_json,
        things="audit events",
        row=lambda r: (
            f"{timestamp_text(r.occurred_at)}  {r.actor:16} {r.action:28} {r.target_type}:{r.target_id}  "
            f"{json.dumps(r.detail, sort_keys=True, default=str)}"
        ),
        total=total,
        limit=limit,
        offset=offset,
    )
