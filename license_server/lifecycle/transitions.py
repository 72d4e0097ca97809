"""The one writer of a license's stored status, and the one rule of which events a change of status emits.

A license's ``status``/``status_reason`` columns are ``compute_status`` materialised for queries (``?status=``),
counts and events; reads always recompute. Whatever changes the facts behind them — an admin action, an activation,
an inner-API first use, a plan change, or time passing — ends here, in one of two forms of the same transition:

- ``transition`` (and ``transition_license``, its form for an ``AsyncSession``): one license the caller holds, its
  status computed with ``compute_status``;
- ``transition_all``: every license at once, for the sweep, with ``compute_status`` written as SQL (``_ladder``; a
  test checks the two agree on every rung).

Both write ``STATUS_COLUMNS`` only when the status or its reason changes, and insert exactly the events that
``TRANSITION_EVENTS`` lists for the change, in the caller's transaction. Each writes a row only if its stored status
is still the one the change was computed from, so a sweep and an action racing on one license emit each event once.
No other module writes these columns (``tests/lifecycle/test_transitions.py`` checks the source).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Connection,
    Table,
    and_,
    bindparam,
    case,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from license_server.events.models import Event
from license_server.events.service import EventType
from license_server.licenses.models import License
from license_server.licenses.terms import LicenseTerms
from license_server.lifecycle.status import Reason, Status, StatusResult, compute_status, next_transition_at
from license_server.replicas.invalidation import Topic, publish

STATUS_COLUMNS = ("status", "status_reason", "previous_status", "status_changed_at")
# What the server stores: `none` is only what an inner API without any license says.
STORED_STATUSES = tuple(status for status in Status if status is not Status.NONE)
# A license is born inactive and never activated; issuing it is its first transition from there.
BIRTH = StatusResult(Status.INACTIVE, Reason.NOT_ACTIVATED)
_USABLE = frozenset({Status.ACTIVE, Status.EXPIRING})


def events_of_change(previous: Status, current: Status) -> tuple[EventType, ...]:
    """THE rule: the events a change of stored status from ``previous`` to ``current`` emits, in order.

    Actions emit their own events besides (``license.suspended``, ``license.activated``, ...); a change of reason
    alone (e.g. suspended, then revoked) emits nothing.
    """
    if previous is current:
        return ()
    if current is Status.EXPIRED:
        return (EventType.LICENSE_EXPIRED,)
    if current is Status.LOST:
        return (EventType.LICENSE_LOST,)
    events: list[EventType] = []
    if previous is Status.LOST and current in _USABLE:
        events.append(EventType.LICENSE_RECOVERED)
    if current is Status.EXPIRING:
        events.append(EventType.LICENSE_EXPIRING_SOON)
    return tuple(events)


TRANSITION_EVENTS: dict[tuple[Status, Status], tuple[EventType, ...]] = {
    (previous, current): events
    for previous in STORED_STATUSES
    for current in STORED_STATUSES
    if (events := events_of_change(previous, current))
}


@dataclass(frozen=True)
class StatusChange:
    """What one transition found: the stored status before, the status now, and the events it emitted."""

    previous: StatusResult
    current: StatusResult
    events: tuple[EventType, ...]

    @property
    def changed(self) -> bool:
        return self.previous != self.current


# -- the per-license form ---------------------------------------------------------------------------------------
_LICENSES = cast(Table, License.__table__)
_EVENTS = cast(Table, Event.__table__)
_WRITE_STATUS = (
    update(_LICENSES)
    .where(
        _LICENSES.c.id == bindparam("b_id"),
        _LICENSES.c.status == bindparam("b_previous"),
        _LICENSES.c.status_reason == bindparam("b_previous_reason"),
    )
    .values(
        status=bindparam("b_status"),
        status_reason=bindparam("b_reason"),
        previous_status=bindparam("b_previous"),
        status_changed_at=bindparam("b_now"),
        next_transition_at=bindparam("b_next"),
        updated_at=bindparam("b_now"),
    )
)
# The facts moved but not the status (a renewal, a check-in, a plan change): only when it can next change moves.
_WRITE_SCHEDULE = (
    update(_LICENSES).where(_LICENSES.c.id == bindparam("b_id")).values(next_transition_at=bindparam("b_next"))
)
_STORED_STATUS = select(_LICENSES.c.status, _LICENSES.c.status_reason).where(_LICENSES.c.id == bindparam("b_id"))
_INSERT_EVENT = insert(_EVENTS)
_ATTEMPTS = 3
# PostgreSQL: the transaction-level advisory lock that transitions of many licenses at once take first (the sweep, a
# plan change), so two of them never lock rows in different orders and deadlock. A single license's transition
# locks one row and needs none. SQLite has one writer at a time anyway.
_MANY_LICENSES_LOCK = 0x6C6966656379636C  # "lifecycl"


async def lock_for_many_licenses(session: AsyncSession) -> None:
    """Take the lock for a transition of many licenses, before locking any of them (PostgreSQL; no-op on SQLite)."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(select(func.pg_advisory_xact_lock(_MANY_LICENSES_LOCK)))


def born(license: License) -> None:
    """Give a license not yet written its birth status; ``transition`` after its INSERT moves it on from there."""
    license.status, license.status_reason = BIRTH.status.value, BIRTH.reason.value
    license.previous_status = license.status_changed_at = None


def transition(connection: Connection, license: License, terms: LicenseTerms, now: datetime) -> StatusChange:
    """Bring one license's stored status up to date with its facts, and emit the events of the change.

    ``license`` holds the facts as the caller's transaction has (or is about to have) written them, and the stored
    status as read. The write is guarded by that stored status: when another transaction (the sweep) moved it between
    the read and this write, the change is computed again from what is stored now, so no event is emitted twice.
    ``license`` is updated in memory without becoming dirty in its session.
    """
    facts = license.facts(terms)
    current = compute_status(facts, now)
    next_at = next_transition_at(facts, now)
    previous = StatusResult(Status(license.status), Reason(license.status_reason))
    for attempt in range(_ATTEMPTS):
        if previous == current:
            if attempt:  # another transaction wrote this very change: keep the in-memory copy in step
                set_committed_value(license, "status", current.status.value)
                set_committed_value(license, "status_reason", current.reason.value)
            if license.next_transition_at != next_at:
                connection.execute(_WRITE_SCHEDULE, {"b_id": license.id, "b_next": next_at})
                set_committed_value(license, "next_transition_at", next_at)
            return StatusChange(previous, current, ())
        written = connection.execute(
            _WRITE_STATUS,
            {
                "b_id": license.id,
                "b_previous": previous.status.value,
                "b_previous_reason": previous.reason.value,
                "b_status": current.status.value,
                "b_reason": current.reason.value,
                "b_now": now,
                "b_next": next_at,
            },
        )
        if written.rowcount == 1:
            break
        stored = connection.execute(_STORED_STATUS, {"b_id": license.id}).one()
        previous = StatusResult(Status(stored.status), Reason(stored.status_reason))
    else:
        raise RuntimeError(f"the stored status of license {license.id} kept changing under this transition")
    events = events_of_change(previous.status, current.status)
    if events:
        connection.execute(
            _INSERT_EVENT,
            [
                {"type": event.value, "occurred_at": now, "license_id": license.id, "activation_id": None, "data": {}}
                for event in events
            ],
        )
    for key, value in zip(
        STATUS_COLUMNS, (current.status.value, current.reason.value, previous.status.value, now), strict=True
    ):
        set_committed_value(license, key, value)
    set_committed_value(license, "next_transition_at", next_at)
    return StatusChange(previous, current, events)


async def transition_license(
    session: AsyncSession, license: License, terms: LicenseTerms, now: datetime
) -> StatusChange:
    """``transition`` in ``session``'s transaction, after flushing its pending writes (the facts, and an action's own
    event, which thus comes before the events of the change it caused)."""
    (change,) = await transition_licenses(session, [(license, terms)], now)
    return change


async def transition_licenses(
    session: AsyncSession, licenses: Iterable[tuple[License, LicenseTerms]], now: datetime
) -> list[StatusChange]:
    """``transition`` for each license, in one hop to the driver (a plan change re-derives all of its licenses)."""
    await session.flush()
    pairs = list(licenses)
    # Whatever made the caller transition these licenses changed their facts: every replica's poll cache drops
    # them when this transaction commits (replicas/invalidation.py), instead of serving them until its TTL.
    await publish(session, Topic.LICENSE, [str(license.id) for license, _ in pairs])

    def run(sync_session: Session) -> list[StatusChange]:
        connection = sync_session.connection()
        return [transition(connection, license, terms, now) for license, terms in pairs]

    return await session.run_sync(run)


# -- the set-based form -----------------------------------------------------------------------------------------
def _ladder(now: Any, heartbeat_deadline: Any = None) -> list[tuple[Any, tuple[Status, Reason]]]:
    """compute_status's rungs, in order, as SQL conditions over the columns each license keeps up to date
    (``expiring_at``, ``grace_ends_at``, ``heartbeat_deadline``: see ``License.refresh_schedule``).

    ``now`` is a time or an SQL expression; ``heartbeat_deadline`` an SQL expression standing in for the column (a
    check-in's new deadline, in the statement that writes it)."""
    deadline = License.heartbeat_deadline if heartbeat_deadline is None else heartbeat_deadline
    return [
        (License.revoked_at.is_not(None), (Status.INACTIVE, Reason.REVOKED)),
        (License.suspended_at.is_not(None), (Status.INACTIVE, Reason.SUSPENDED)),
        (License.starts_at > now, (Status.INACTIVE, Reason.NOT_STARTED)),
        (License.grace_ends_at <= now, (Status.EXPIRED, Reason.EXPIRED)),
        (License.first_activated_at.is_(None), (Status.INACTIVE, Reason.NOT_ACTIVATED)),
        (deadline < now, (Status.LOST, Reason.HEARTBEAT_MISSED)),
        (License.expires_at <= now, (Status.EXPIRING, Reason.IN_GRACE_PERIOD)),
        (License.expiring_at <= now, (Status.EXPIRING, Reason.EXPIRES_SOON)),
    ]


def next_transition_expression(now: Any, heartbeat_deadline: Any = None) -> Any:
    """``status.next_transition_at`` as SQL over the same columns as ``_ladder`` (a test checks the two agree).

    The server has no offline deadline (that is an offline observer's fact), so that rung is absent here."""
    deadline = License.heartbeat_deadline if heartbeat_deadline is None else heartbeat_deadline
    scheduled = case(
        (License.expiring_at > now, License.expiring_at),
        (License.expires_at > now, License.expires_at),
        else_=License.grace_ends_at,
    )
    return case(
        (or_(License.revoked_at.is_not(None), License.suspended_at.is_not(None)), null()),
        (License.starts_at > now, License.starts_at),
        (License.grace_ends_at <= now, null()),
        (License.first_activated_at.is_(None), License.grace_ends_at),
        (deadline < now, License.grace_ends_at),
        (deadline < scheduled, deadline),
        else_=scheduled,
    )


def schedule_expression(now: Any, heartbeat_deadline: Any = None) -> Any:
    """What a statement that changes a license's facts without moving its status writes to ``next_transition_at``:
    ``now`` when the stored status no longer says what the facts do (the sweep's next batch moves it), else when it
    can next change. So a fact change never hides a due transition from the sweep."""
    status, reason = status_expressions(now, heartbeat_deadline)
    return case(
        (or_(status != License.status, reason != License.status_reason), now),
        else_=next_transition_expression(now, heartbeat_deadline),
    )


def status_expressions(now: Any, heartbeat_deadline: Any = None) -> tuple[Any, Any]:
    ladder = _ladder(now, heartbeat_deadline)
    status = case(*[(cond, s.value) for cond, (s, _) in ladder], else_=Status.ACTIVE.value)
    reason = case(*[(cond, r.value) for cond, (_, r) in ladder], else_=Reason.ACTIVE.value)
    return status, reason


def _transition_events_table() -> Any:
    """TRANSITION_EVENTS as a derived table (from_status, to_status, type, slot), to join the changed rows with.

    A UNION ALL of literal rows rather than VALUES: SQLite has no column list on a derived table, and Python's
    sqlite3 reports no row count for an INSERT that starts with WITH.
    """
    rows = [
        select(
            literal(previous.value).label("from_status"),
            literal(current.value).label("to_status"),
            literal(event.value).label("type"),
            literal(slot).label("slot"),
        )
        for (previous, current), events in TRANSITION_EVENTS.items()
        for slot, event in enumerate(events)
    ]
    return union_all(*rows).subquery("transition_events")


async def transition_all(session: AsyncSession, *, now: datetime) -> tuple[int, int]:
    """Every license whose stored status no longer says what its facts do: write it, and emit the events of each
    change, in two set-based statements of ``session``'s transaction (the caller commits).

    This scans every license: the reconciliation of the whole table (and the baseline the sweep benchmark measures).
    The scheduled sweep uses ``transition_due``, which visits only the licenses whose ``next_transition_at`` came.
    Returns (licenses changed, events emitted).
    """
    await lock_for_many_licenses(session)
    return await _transition_where(session, now, None)


@dataclass(frozen=True)
class DueBatch:
    visited: int  # licenses whose next transition had come
    changed: int
    events: int
    cursor: tuple[datetime, uuid.UUID] | None  # the (next_transition_at, id) the next batch starts after


SWEEP_BATCH = 1000


async def transition_due(
    session: AsyncSession,
    *,
    now: datetime,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int = SWEEP_BATCH,
) -> DueBatch:
    """One bounded batch of the sweep, in ``session``'s transaction (the caller commits, then asks for the next).

    The licenses whose ``next_transition_at`` has come, at most ``limit`` of them in (next_transition_at, id) order
    after ``after``, are moved as ``transition_all`` moves them and given their next instant. The index on
    (next_transition_at, id) finds them, so a sweep costs what is due, not the size of the table. Every batch
    starts after the last key of the one before, so a run ends even if a license comes due again meanwhile.
    """
    await lock_for_many_licenses(session)
    due = select(License.id, License.next_transition_at).where(License.next_transition_at <= now)
    if after is not None:
        due = due.where(
            or_(
                License.next_transition_at > after[0],
                and_(License.next_transition_at == after[0], License.id > after[1]),
            )
        )
    rows = (await session.execute(due.order_by(License.next_transition_at, License.id).limit(limit))).all()
    if not rows:
        return DueBatch(0, 0, 0, None)
    ids = [row.id for row in rows]
    changed, events = await _transition_where(session, now, License.id.in_(ids))
    await session.execute(
        update(License)
        .where(License.id.in_(ids))
        .values(next_transition_at=next_transition_expression(now))
        .execution_options(synchronize_session=False)
    )
    last = rows[-1]
    return DueBatch(len(rows), changed, events, (last.next_transition_at, last.id))


async def _transition_where(session: AsyncSession, now: datetime, among: Any) -> tuple[int, int]:
    """The set-based transition of the licenses ``among`` selects (all of them for None). The changed rows are
    marked with this call's own random id, so the events are those of exactly the rows this statement changed."""
    mark = secrets.randbits(62)
    new_status, new_reason = status_expressions(now)
    stale = or_(new_status != License.status, new_reason != License.status_reason)
    moved = await session.execute(
        update(License)
        .where(stale if among is None else and_(among, stale))
        .values(
            previous_status=License.status,
            status=new_status,
            status_reason=new_reason,
            status_changed_at=now,
            next_transition_at=next_transition_expression(now),
            sweep_mark=mark,
        )
        .execution_options(synchronize_session=False)
    )
    if not moved.rowcount:  # type: ignore[attr-defined]
        return 0, 0
    if among is not None:
        # A bounded batch: read its changed rows back by primary key and apply the rule to each. (The join below
        # would make SQLite's planner scan the whole table for the few rows of a batch.)
        changed = await session.execute(
            select(License.id, License.previous_status, License.status).where(among, License.sweep_mark == mark)
        )
        rows = [
            {"type": event.value, "occurred_at": now, "license_id": row.id, "activation_id": None, "data": {}}
            for row in changed
            for event in events_of_change(Status(row.previous_status), Status(row.status))
        ]
        if rows:
            await session.execute(_INSERT_EVENT, rows)
        return int(moved.rowcount), len(rows)  # type: ignore[attr-defined]
    table = _transition_events_table()
    marked = License.sweep_mark == bindparam("mark")
    emitted = await session.execute(
        insert(_EVENTS).from_select(
            ["type", "occurred_at", "license_id", "data"],
            select(table.c.type, literal(now, License.status_changed_at.type), License.id, literal({}, JSON))
            .select_from(License)
            .join(table, and_(License.previous_status == table.c.from_status, License.status == table.c.to_status))
            .where(marked)
            .order_by(table.c.slot),
        ),
        {"mark": mark},
    )
    return int(moved.rowcount), int(emitted.rowcount)  # type: ignore[attr-defined]
