"""``webhooks`` (endpoints, deliveries, redeliver) and ``events`` (the event log): the admin API's reads and its one
repair action, on the same services its controllers call."""

from __future__ import annotations

import uuid

import click
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.tokens import cli_actor
from license_server.cli.common import emit, emit_list, json_option, model_payload, run_with_session, timestamp_text
from license_server.events import webhooks as service
from license_server.events.schemas import EventOut, WebhookDeliveryOut, WebhookOut, delivery_out
from license_server.events.service import EventType
from license_server.events.webhooks import DeliveryState
from license_server.runtime import Runtime

limit_option = click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
offset_option = click.option("--offset", type=click.IntRange(0), default=0)


def _delivery_line(row: WebhookDeliveryOut) -> str:
    when = timestamp_text(row.delivered_at or row.next_attempt_at or row.created_at)
    status = f"HTTP {row.last_status_code}" if row.last_status_code else (row.last_error or "")
    return f"{row.id}  {row.state:9} {row.attempts:>2} tries  {when}  {row.event_type:24} {status}"


# -- webhooks -------------------------------------------------------------------------------------------------------
@click.group()
def webhooks() -> None:
    """Webhook endpoints and their deliveries (create and edit them over the admin API)."""


@webhooks.command("list")
@limit_option
@offset_option
@json_option
def list_endpoints(limit: int, offset: int, as_json: bool) -> None:
    """Webhook endpoints, oldest first (never their secrets)."""

    async def work(_: Runtime, session: AsyncSession) -> tuple[list[WebhookOut], int]:
        rows, total = await service.list_endpoints(session, limit=limit, offset=offset)
        return [WebhookOut.model_validate(r) for r in rows], total

    rows, total = run_with_session(work, as_json=as_json)
    emit_list(
        rows,
        as_json=as_json,
        things="webhook endpoints",
        row=lambda r: f"{r.id}  {'on ' if r.enabled else 'off'}  {r.url}  {','.join(r.event_types) or '(all)'}",
        total=total,
        limit=limit,
        offset=offset,
    )


@webhooks.command("show")
@click.argument("endpoint_id", type=click.UUID)
@json_option
def show_endpoint(endpoint_id: uuid.UUID, as_json: bool) -> None:
    """One webhook endpoint."""

    async def work(_: Runtime, session: AsyncSession) -> WebhookOut:
        return WebhookOut.model_validate(await service.get_endpoint(session, endpoint_id))

    emit(model_payload(run_with_session(work, as_json=as_json)), as_json=as_json)


@webhooks.command("deliveries")
@click.option("--endpoint", "endpoint_id", type=click.UUID, default=None, help="Only this endpoint's.")
@click.option("--state", "state", type=click.Choice([s.value for s in DeliveryState]), default=None)
@limit_option
@offset_option
@json_option
def list_deliveries(endpoint_id: uuid.UUID | None, state: str | None, limit: int, offset: int, as_json: bool) -> None:
    """Deliveries, newest event first, e.g. --state failed for the ones that gave up."""

    async def work(_: Runtime, session: AsyncSession) -> tuple[list[WebhookDeliveryOut], int]:
        views, total = await service.list_deliveries(
            session,
            endpoint_id=endpoint_id,
            state=DeliveryState(state) if state else None,
            limit=limit,
            offset=offset,
        )
        return [delivery_out(v) for v in views], total

    rows, total = run_with_session(work, as_json=as_json)
    emit_list(rows, as_json=as_json, things="deliveries", row=_delivery_line, total=total, limit=limit, offset=offset)


@webhooks.command("redeliver")
@click.argument("delivery_id", type=click.UUID)
@json_option
def redeliver(delivery_id: uuid.UUID, as_json: bool) -> None:
    """Send a delivery again now, whatever its state, with a fresh budget of attempts (the scheduler sends it)."""

    async def work(runtime: Runtime, session: AsyncSession) -> WebhookDeliveryOut:
        view = await service.redeliver(session, actor=cli_actor(), delivery_id=delivery_id, clock=runtime.clock)
        return delivery_out(view)

    row = run_with_session(work, as_json=as_json)
    emit(model_payload(row), as_json=as_json, human=f"queued {row.id} again ({row.event_type})")


# -- events ---------------------------------------------------------------------------------------------------------
@click.group()
def events() -> None:
    """The event log webhooks are fanned out from."""


@events.command("list")
@click.option("--type", "type_", type=click.Choice([t.value for t in EventType]), default=None)
@click.option("--license", "license_id", type=click.UUID, default=None)
@click.option("--after-id", type=click.IntRange(0, 2**63 - 1), default=None, help="Events after this id, oldest first.")
@limit_option
@offset_option
@json_option
def list_events(
    type_: str | None, license_id: uuid.UUID | None, after_id: int | None, limit: int, offset: int, as_json: bool
) -> None:
    """Events, newest first; with --after-id, the later ones oldest first (to follow the log)."""

    async def work(_: Runtime, session: AsyncSession) -> tuple[list[EventOut], int]:
        rows, total = await service.list_events(
            session,
            type=EventType(type_) if type_ else None,
            license_id=license_id,
            after_id=after_id,
            limit=limit,
            offset=offset,
        )
        return [EventOut.model_validate(r) for r in rows], total

    rows, total = run_with_session(work, as_json=as_json)
    emit_list(
        rows,
        as_json=as_json,
        things="events",
        row=lambda r: f"{r.id:>8}  {timestamp_text(r.occurred_at)}  {r.type:28} {r.license_id or ''}",
        total=total,
        limit=limit,
        offset=offset,
    )
