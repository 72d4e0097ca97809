"""The lifecycle sweep: materialise every license's status with set-based SQL and emit the events of each change.

The licenses are moved by ``lifecycle.transitions.transition_all`` (the set-based form of the one status transition,
with the one rule of which events a change emits); the sweep adds the activations that went quiet. It runs under a
lease, so one replica at a time runs it; running it again changes nothing and emits nothing.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, cast

from sqlalchemy import JSON, Table, bindparam, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.deployments.models import Activation
from license_server.events.leases import acquire_lease
from license_server.events.models import Event
from license_server.events.service import EventType
from license_server.lifecycle.transitions import transition_all
from license_server.metrics import SWEEP_DURATION, SWEEP_TRANSITIONS
from license_server.scheduling import ScheduledJob

if TYPE_CHECKING:
    from license_server.runtime import Runtime

logger = logging.getLogger(__name__)
SWEEP_LEASE = "lifecycle.sweep"
_EVENTS = cast(Table, Event.__table__)  # Core INSERT ... SELECT; the ORM form would treat parameters as rows


@dataclass(frozen=True)
class SweepResult:
    ran: bool
    licenses_changed: int = 0
    activations_lost: int = 0
    events: int = 0


async def sweep(session: AsyncSession, *, now: datetime) -> tuple[int, int, int]:
    """One transaction: move statuses (``transition_all``), mark lost activations, and emit their events.

    Returns (licenses changed, activations lost, events). The activations it marks lost carry its own random id, so
    it emits events for exactly those rows.
    """
    changed, license_events = await transition_all(session, now=now)
    mark = secrets.randbits(62)
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
    activations_lost, activation_event_count = lost.rowcount, activation_events.rowcount  # type: ignore[attr-defined]
    return changed, int(activations_lost), license_events + int(activation_event_count)


async def run_sweep(runtime: Runtime, *, lease_ttl: timedelta | None = None) -> SweepResult:
    """The scheduled job: sweep if this process holds the lease."""
    now = runtime.clock()
    ttl = lease_ttl or timedelta(seconds=max(2 * runtime.settings.sweep_interval_seconds, 30))
    async with runtime.session_factory() as session:
        if not await acquire_lease(session, name=SWEEP_LEASE, holder=runtime.lease_holder, ttl=ttl, now=now):
            return SweepResult(ran=False)
        started = time.perf_counter()
        changed, lost, events = await sweep(session, now=now)
        elapsed = time.perf_counter() - started
    SWEEP_DURATION.observe(elapsed)
    SWEEP_TRANSITIONS.labels("licenses_changed").inc(changed)
    SWEEP_TRANSITIONS.labels("activations_lost").inc(lost)
    SWEEP_TRANSITIONS.labels("events").inc(events)
    logger.info(
        "sweep: %d licenses changed, %d activations lost, %d events in %.1f ms",
        changed,
        lost,
        events,
        elapsed * 1e3,
        extra={
            "job": SWEEP_JOB_NAME,
            "licenses_changed": changed,
            "activations_lost": lost,
            "events": events,
            "duration_ms": round(elapsed * 1e3, 2),
        },
    )
    return SweepResult(ran=True, licenses_changed=changed, activations_lost=lost, events=events)


SWEEP_JOB_NAME = "lifecycle.sweep"
SWEEP_JOB = ScheduledJob(SWEEP_JOB_NAME, run_sweep, lambda settings: settings.sweep_interval_seconds)
