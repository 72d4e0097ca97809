"""The lifecycle sweep: materialise every license's status with set-based SQL and emit one event per transition.

The CASE expressions below are ``compute_status`` written in SQL over the columns each license keeps up to date
(``expiring_at``, ``grace_ends_at``, ``heartbeat_deadline``); a test checks the two agree on every rung. The sweep
runs under a lease, so one replica at a time runs it; running it again changes nothing and emits nothing.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import JSON, Table, and_, bindparam, case, insert, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.deployments.models import Activation
from license_server.events.leases import acquire_lease
from license_server.events.models import Event
from license_server.events.service import EventType
from license_server.licenses.models import License
from license_server.lifecycle.status import Reason, Status
from license_server.scheduling import ScheduledJob

if TYPE_CHECKING:
    from license_server.runtime import Runtime

SWEEP_LEASE = "lifecycle.sweep"
_EVENTS = cast(Table, Event.__table__)  # Core INSERT ... SELECT; the ORM form would treat parameters as rows


def _ladder(now: datetime) -> list[tuple[Any, tuple[Status, Reason]]]:
    """compute_status's rungs, in order, as SQL conditions."""
    return [
        (License.revoked_at.is_not(None), (Status.INACTIVE, Reason.REVOKED)),
        (License.suspended_at.is_not(None), (Status.INACTIVE, Reason.SUSPENDED)),
        (License.starts_at > now, (Status.INACTIVE, Reason.NOT_STARTED)),
        (License.grace_ends_at <= now, (Status.EXPIRED, Reason.EXPIRED)),
        (License.first_activated_at.is_(None), (Status.INACTIVE, Reason.NOT_ACTIVATED)),
        (License.heartbeat_deadline < now, (Status.LOST, Reason.HEARTBEAT_MISSED)),
        (License.expires_at <= now, (Status.EXPIRING, Reason.IN_GRACE_PERIOD)),
        (License.expiring_at <= now, (Status.EXPIRING, Reason.EXPIRES_SOON)),
    ]


def status_expressions(now: datetime) -> tuple[Any, Any]:
    ladder = _ladder(now)
    status = case(*[(cond, s.value) for cond, (s, _) in ladder], else_=Status.ACTIVE.value)
    reason = case(*[(cond, r.value) for cond, (_, r) in ladder], else_=Reason.ACTIVE.value)
    return status, reason


def transition_event_type() -> Any:
    """Which event a change from previous_status to status is, if any (actions emit their own events)."""
    old, new = License.previous_status, License.status
    return case(
        (new == Status.EXPIRED.value, EventType.LICENSE_EXPIRED.value),
        (new == Status.LOST.value, EventType.LICENSE_LOST.value),
        (
            and_(old == Status.LOST.value, new.in_([Status.ACTIVE.value, Status.EXPIRING.value])),
            EventType.LICENSE_RECOVERED.value,
        ),
        (and_(new == Status.EXPIRING.value, old != Status.EXPIRING.value), EventType.LICENSE_EXPIRING_SOON.value),
        else_=None,
    )


@dataclass(frozen=True)
class SweepResult:
    ran: bool
    licenses_changed: int = 0
    activations_lost: int = 0
    events: int = 0


async def sweep(session: AsyncSession, *, now: datetime) -> tuple[int, int, int]:
    """One transaction: move statuses, mark lost activations, and emit their events. Returns the three counts.

    Each sweep marks the rows it changes with its own random id, and emits events for exactly those rows.
    """
    mark = secrets.randbits(62)
    new_status, new_reason = status_expressions(now)
    changed = or_(new_status != License.status, new_reason != License.status_reason)
    moved = await session.execute(
        update(License)
        .where(changed)
        .values(
            previous_status=License.status,
            status=new_status,
            status_reason=new_reason,
            status_changed_at=now,
            sweep_mark=mark,
        )
        .execution_options(synchronize_session=False)
    )
    event_type = transition_event_type()
    license_events = await session.execute(
        insert(_EVENTS).from_select(
            ["type", "occurred_at", "license_id", "data"],
            select(event_type, literal(now, License.status_changed_at.type), License.id, literal({}, JSON)).where(
                License.sweep_mark == bindparam("mark"), event_type.is_not(None)
            ),
        ),
        {"mark": mark},
    )
    lost = await session.execute(
        update(Activation)
        .where(Activation.deactivated_at.is_(None), Activation.lost_at.is_(None), Activation.heartbeat_deadline < now)
        .values(lost_at=now, sweep_mark=mark)
        .execution_options(synchronize_session=False)
    )
    activation_events = await session.execute(
        insert(_EVENTS).from_select(
            ["type", "occurred_at", "license_id", "activation_id", "data"],
            select(
                literal(EventType.ACTIVATION_LOST.value),
                literal(now, Activation.lost_at.type),
                Activation.license_id,
                Activation.id,
                literal({}, JSON),
            ).where(Activation.sweep_mark == bindparam("mark")),
        ),
        {"mark": mark},
    )
    await session.commit()
    counts = (moved.rowcount, lost.rowcount, license_events.rowcount + activation_events.rowcount)  # type: ignore[attr-defined]
    return int(counts[0]), int(counts[1]), int(counts[2])


async def run_sweep(runtime: Runtime, *, lease_ttl: timedelta | None = None) -> SweepResult:
    """The scheduled job: sweep if this process holds the lease."""
    now = runtime.clock()
    ttl = lease_ttl or timedelta(seconds=max(2 * runtime.settings.sweep_interval_seconds, 30))
    async with runtime.session_factory() as session:
        if not await acquire_lease(session, name=SWEEP_LEASE, holder=runtime.lease_holder, ttl=ttl, now=now):
            return SweepResult(ran=False)
        changed, lost, events = await sweep(session, now=now)
    return SweepResult(ran=True, licenses_changed=changed, activations_lost=lost, events=events)


SWEEP_JOB = ScheduledJob("lifecycle.sweep", run_sweep, lambda settings: settings.sweep_interval_seconds)
