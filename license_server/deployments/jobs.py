"""Writing buffered check-ins: one batched statement per table, however many polls arrived since the last flush."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, cast

from sqlalchemy import Table, bindparam, exists, or_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from license_server.deployments.models import Activation
from license_server.deployments.runtime_state import CheckIn
from license_server.licenses.models import License
from license_server.lifecycle.transitions import schedule_expression
from license_server.scheduling import ScheduledJob

if TYPE_CHECKING:
    from license_server.runtime import Runtime

logger = logging.getLogger(__name__)

# Core statements (not ORM) so a list of parameter sets runs as one executemany.
_activation_table = cast(Table, Activation.__table__)
_license_table = cast(Table, License.__table__)
_activations = _activation_table.c
_licenses = _license_table.c
# A deactivated activation's check-ins are no check-ins at all: not those a replica still answers for a few seconds
# from its cached token, nor those buffered before the deactivation and flushed after it.
_activation_check_in = (
    update(_activation_table)
    .where(
        _activations.id == bindparam("b_id"),
        _activations.last_seen_at < bindparam("b_at"),
        _activations.deactivated_at.is_(None),
    )
    .values(last_seen_at=bindparam("b_at"), heartbeat_deadline=bindparam("b_deadline"), lost_at=None)
)
# Never move a license's last check-in backwards: another replica may have written a later one.
_license_check_in = (
    update(_license_table)
    .where(
        _licenses.id == bindparam("b_id"),
        or_(_licenses.last_check_in_at.is_(None), _licenses.last_check_in_at < bindparam("b_at")),
    )
    .values(
        last_check_in_at=bindparam("b_at"),
        heartbeat_deadline=bindparam("b_deadline"),
        # The new deadline moves when the status can next change; a license lost until now is due at once.
        next_transition_at=schedule_expression(
            bindparam("b_at", type_=_licenses.last_check_in_at.type),
            bindparam("b_deadline", type_=_licenses.heartbeat_deadline.type),
        ),
    )
)
# A deployment's check-in refreshes its license only while its activation is live (checked in this statement, so a
# deactivation committed a moment ago is seen).
_license_check_in_by_live_activation = _license_check_in.where(
    exists().where(_activations.id == bindparam("b_activation"), _activations.deactivated_at.is_(None))
)


async def write_check_ins(connection: AsyncConnection, pending: dict[uuid.UUID, CheckIn]) -> None:
    """Write check-ins (keyed by activation, or by inner-API credential) in the caller's transaction.

    One statement per kind of row. A license gets one row per deployment that checked in (newest first, so later
    rows of the same license usually match nothing): if the newest came from a deactivated activation, an older one
    from a live activation still counts. Rows go in id order, so concurrent flushes lock rows in the same order.
    """
    activation_rows: list[dict[str, object]] = []
    license_rows: list[dict[str, object]] = []
    license_level: dict[uuid.UUID, dict[str, object]] = {}  # inner-API calls: the newest per license
    for key, check_in in sorted(pending.items()):
        deadline = check_in.at + timedelta(seconds=check_in.heartbeat_seconds)
        row: dict[str, object] = {"b_id": check_in.license_id, "b_at": check_in.at, "b_deadline": deadline}
        if check_in.activation:
            activation_rows.append({**row, "b_id": key})
            license_rows.append({**row, "b_activation": key})
        else:
            current = license_level.get(check_in.license_id)
            if current is None or cast(datetime, current["b_at"]) < check_in.at:
                license_level[check_in.license_id] = row
    license_rows.sort(key=lambda r: (cast(uuid.UUID, r["b_id"]), -cast(datetime, r["b_at"]).timestamp()))
    if activation_rows:
        await connection.execute(_activation_check_in, activation_rows)
    if license_rows:
        await connection.execute(_license_check_in_by_live_activation, license_rows)
    if license_level:
        await connection.execute(_license_check_in, [license_level[k] for k in sorted(license_level)])


async def flush_check_ins(runtime: Runtime) -> int:
    """Write what polls recorded. On failure the check-ins go back into the buffer for the next try."""
    pending = runtime.poll_state.check_ins.drain()
    if not pending:
        return 0
    try:
        async with runtime.session_factory() as session:
            await write_check_ins(await session.connection(), pending)
            await session.commit()
    except Exception:
        runtime.poll_state.check_ins.restore(pending)
        logger.exception("writing %d check-ins failed; they stay buffered", len(pending))
        raise
    return len(pending)


FLUSH_CHECK_INS_JOB = ScheduledJob(
    "deployments.flush_check_ins", flush_check_ins, lambda settings: settings.checkin_flush_seconds, per_process=True
)
