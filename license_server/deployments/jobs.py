"""Writing buffered check-ins: one batched statement per table, however many polls arrived since the last flush."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, cast

from sqlalchemy import Table, bindparam, or_, update

from license_server.deployments.models import Activation
from license_server.licenses.models import License
from license_server.scheduling import ScheduledJob

if TYPE_CHECKING:
    from license_server.runtime import Runtime

logger = logging.getLogger(__name__)

# Core statements (not ORM) so a list of parameter sets runs as one executemany.
_activation_table = cast(Table, Activation.__table__)
_license_table = cast(Table, License.__table__)
_activations = _activation_table.c
_licenses = _license_table.c
_activation_check_in = (
    update(_activation_table)
    .where(_activations.id == bindparam("b_id"), _activations.last_seen_at < bindparam("b_at"))
    .values(last_seen_at=bindparam("b_at"), heartbeat_deadline=bindparam("b_deadline"), lost_at=None)
)
# Never move a license's last check-in backwards: another replica may have written a later one.
_license_check_in = (
    update(_license_table)
    .where(
        _licenses.id == bindparam("b_id"),
        or_(_licenses.last_check_in_at.is_(None), _licenses.last_check_in_at < bindparam("b_at")),
    )
    .values(last_check_in_at=bindparam("b_at"), heartbeat_deadline=bindparam("b_deadline"))
)


async def flush_check_ins(runtime: Runtime) -> int:
    """Write what polls recorded. On failure the check-ins go back into the buffer for the next try."""
    pending = runtime.poll_state.check_ins.drain()
    if not pending:
        return 0
    activations = [
        {"b_id": activation_id, "b_at": c.at, "b_deadline": c.at + timedelta(seconds=c.heartbeat_seconds)}
        for activation_id, c in pending.items()
    ]
    latest: dict[object, dict[str, object]] = {}
    for row, check_in in zip(activations, pending.values(), strict=True):
        current = latest.get(check_in.license_id)
        if current is None or current["b_at"] < check_in.at:  # type: ignore[operator]
            latest[check_in.license_id] = {**row, "b_id": check_in.license_id}
    try:
        async with runtime.session_factory() as session:
            connection = await session.connection()
            activation_rows = [row for row, c in zip(activations, pending.values(), strict=True) if c.activation]
            if activation_rows:
                await connection.execute(_activation_check_in, activation_rows)
            await connection.execute(_license_check_in, list(latest.values()))
            await session.commit()
    except Exception:
        runtime.poll_state.check_ins.restore(pending)
        logger.exception("writing %d check-ins failed; they stay buffered", len(pending))
        raise
    return len(pending)


FLUSH_CHECK_INS_JOB = ScheduledJob(
    "deployments.flush_check_ins", flush_check_ins, lambda settings: settings.checkin_flush_seconds, per_process=True
)
