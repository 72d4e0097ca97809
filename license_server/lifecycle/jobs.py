"""The lifecycle sweep: materialise every license's status with set-based SQL and emit the events of each change.

The licenses are moved by ``lifecycle.transitions.transition_due`` (the set-based form of the one status transition,
with the one rule of which events a change emits, over the licenses whose ``next_transition_at`` came, in bounded
batches); the sweep adds the activations that went quiet. It runs under a
lease, so one replica at a time runs it; running it again changes nothing and emits nothing.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import JSON, Table, and_, bindparam, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.deployments.models import Activation
from license_server.events.leases import acquire_lease
from license_server.events.models import Event
from license_server.events.service import EventType
from license_server.lifecycle.transitions import SWEEP_BATCH, transition_all, transition_due
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


async def sweep(session: AsyncSession, *, now: datetime, batch_size: int = SWEEP_BATCH) -> tuple[int, int, int]:
    """Move the statuses that can have changed (``transition_due``), mark lost activations, and emit their events,
    in bounded batches, each its own transaction: a minute's sweep touches only what came due, and holds no lock on
    more than ``batch_size`` rows at a time.

    Returns (licenses changed, activations lost, events). The activations it marks lost carry its own random id, so
    it emits events for exactly those rows.
    """
    # Metrics hook (ops15a, license_server/metrics.py): sweep duration, licenses visited/changed per run.
    changed = events = 0
    cursor = None
    while True:
        batch = await transition_due(session, now=now, after=cursor, limit=batch_size)
        await session.commit()
        changed, events, cursor = changed + batch.changed, events + batch.events, batch.cursor
        if batch.visited < batch_size:
            break
    lost = 0
    while True:
        marked, emitted = await _mark_lost_activations(session, now=now, limit=batch_size)
        await session.commit()
        lost, events = lost + marked, events + emitted
        if marked < batch_size:
            break
    return changed, lost, events


async def _mark_lost_activations(session: AsyncSession, *, now: datetime, limit: int | None) -> tuple[int, int]:
    """Live activations past their heartbeat deadline, at most ``limit`` of them (found by its index; None: all):
    mark them lost and emit ``activation.lost`` for each. Returns (marked, events)."""
    mark = secrets.randbits(62)
    marked: Any = Activation.sweep_mark == bindparam("mark")
    quiet = and_(Activation.deactivated_at.is_(None), Activation.lost_at.is_(None), Activation.heartbeat_deadline < now)
    if limit is not None:
        due = select(Activation.id).where(quiet).order_by(Activation.heartbeat_deadline).limit(limit)
        ids = list((await session.execute(due)).scalars())
        if not ids:
            return 0, 0
        quiet, marked = and_(quiet, Activation.id.in_(ids)), and_(marked, Activation.id.in_(ids))
    lost = await session.execute(
        update(Activation)
        .where(quiet)
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
            ).where(marked),
        ),
        {"mark": mark},
    )
    return int(lost.rowcount), int(activation_events.rowcount)  # type: ignore[attr-defined]


async def full_sweep(session: AsyncSession, *, now: datetime) -> tuple[int, int, int]:
    """The sweep as it was before ``next_transition_at``: every license compared with its facts, in one
    transaction. Kept as the reconciliation of the whole table and as the benchmark's baseline (bench/sweep.py)."""
    changed, license_events = await transition_all(session, now=now)
    marked, emitted = await _mark_lost_activations(session, now=now, limit=None)
    await session.commit()
    return changed, marked, license_events + emitted


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
