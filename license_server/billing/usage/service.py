"""Usage writes and reads: consume / refund, reserve / commit / release, gauges, usage events, the limits report.

Each write is a job (see ``writer.py``) that follows one order: lock the counter (or gauge) it checks, look up its
idempotency key under that lock (so a concurrent replay sees the first write), check the effective limit against
``used + held + amount``, then write. A job's savepoint (SQLite) or transaction (PostgreSQL) undoes everything it
did if anything fails, so a refusal writes nothing: reserve, the hottest write, relies on that to add its hold in
the very statement that locks and reads the counter, and take it back when it refuses or finds a replay.

The effective limit comes from the account's cached snapshot (a few seconds stale at most, dropped by staff writes
in this process); used and held are always read under the lock, so N concurrent writers of a limit L get exactly L.
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple, TypeVar, cast

import msgspec
from sqlalchemy import Connection, Table, bindparam, func, literal_column, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.billing.accounts.models import SubscriptionStatus
from license_server.billing.accounts.snapshots import AccountSnapshot
from license_server.billing.clocks.service import billing_now, clocked_account_ids
from license_server.billing.limits import EffectiveLimit, QuotaKind, effective_limit, quota_kind
from license_server.billing.money import decimal_text
from license_server.billing.periods import Period, period_containing
from license_server.billing.sql import Prepared, upsert_insert
from license_server.billing.state import BillingState, CachedReport
from license_server.billing.subscriptions.status import trial_days_remaining
from license_server.billing.usage.models import (
    Reservation,
    ReservationStatus,
    UsageCounter,
    UsageEvent,
    UsageGauge,
    UsageOperation,
    UsageRecord,
)
from license_server.billing.usage.writer import DEFERRED, BatchedJob
from license_server.clock import as_utc
from license_server.db.base import ordered_id
from license_server.errors import (
    IdempotencyConflict,
    NotRefundable,
    QuotaKindMismatch,
    ReservationClosed,
    ReservationNotFound,
    SubscriptionLimitReached,
    SubscriptionPastDue,
    SubscriptionPaused,
    UsageRecordNotFound,
    ValidationFailed,
)

_COUNTERS = cast(Table, UsageCounter.__table__)
_GAUGES = cast(Table, UsageGauge.__table__)
_RECORDS = cast(Table, UsageRecord.__table__)
_RESERVATIONS = cast(Table, Reservation.__table__)
_EVENTS = cast(Table, UsageEvent.__table__)
MAX_TTL_SECONDS = 7 * 86400
T = TypeVar("T")


# What json.dumps(sort_keys=True, separators=(",", ":"), default=str) builds per call, built once.
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


def request_digest(**fields: Any) -> str:
    """What a replay must repeat exactly: the write's meaningful fields, canonically serialised."""
    return hashlib.sha256(_CANONICAL_JSON.encode(fields).encode()).hexdigest()


def _limit_entry(limit: EffectiveLimit, used: int) -> dict[str, Any]:
    if limit.limit is None:
        return {"used": used}
    return {"used": used, "limit": limit.limit, "remaining": max(0, limit.limit - used)}


def _require_kind(snapshot: AccountSnapshot, key: str, kind: QuotaKind) -> None:
    declared = quota_kind(snapshot.facts, key)
    if declared is not None and declared is not kind:
        raise QuotaKindMismatch(
            f"{key} is a {declared.value} quota on the account's plan; use the "
            + ("gauge routes" if declared is QuotaKind.TOTAL else "consume / reserve routes"),
            field="key",
        )


# The last period found per anchor: periods partition time, so one that contains ``now`` is the one.
_LAST_PERIODS: dict[datetime | None, Period] = {}
_MAX_LAST_PERIODS = 10_000


def _period(snapshot: AccountSnapshot, now: datetime) -> Period:
    anchor = snapshot.anchor
    last = _LAST_PERIODS.get(anchor)
    if last is not None and last.contains(now):
        return last
    period = period_containing(now, anchor)
    if len(_LAST_PERIODS) >= _MAX_LAST_PERIODS:
        _LAST_PERIODS.clear()
    _LAST_PERIODS[anchor] = period
    return period


# -- locks (the one place a counter or gauge is read for a check) -------------------------------------------------
# Built once: executing a prebuilt statement with a parameter dict skips building and cache-keying it per call, which
# is most of a write's CPU otherwise (the activation writer does the same).
_COUNTER_KEY = (
    _COUNTERS.c.account_id == bindparam("b_account"),
    _COUNTERS.c.key == bindparam("b_key"),
    _COUNTERS.c.period_start == bindparam("b_start"),
)
_INSERT_COUNTER = {
    dialect: upsert_insert(dialect, _COUNTERS).on_conflict_do_nothing(
        index_elements=["account_id", "key", "period_start"]
    )
    for dialect in ("sqlite", "postgresql")
}
_LOCK_COUNTER = select(_COUNTERS.c.used, _COUNTERS.c.held).where(*_COUNTER_KEY).with_for_update()


def _upsert_add(dialect: str) -> Any:
    insert = upsert_insert(dialect, _COUNTERS)
    return insert.on_conflict_do_update(
        index_elements=["account_id", "key", "period_start"],
        set_={"used": _COUNTERS.c.used + insert.excluded.used, "held": _COUNTERS.c.held + insert.excluded.held},
    ).returning(_COUNTERS.c.used, _COUNTERS.c.held)


# Add to a counter, creating it if absent, and answer its new (used, held): one statement that also takes the row
# lock on PostgreSQL (ON CONFLICT DO UPDATE locks the row it updates). A write that adds before it checks relies on
# its savepoint (SQLite) or transaction (PostgreSQL) to undo the addition when it refuses.
_UPSERT_ADD_TO_COUNTER = {dialect: _upsert_add(dialect) for dialect in ("sqlite", "postgresql")}
_ADD_TO_COUNTER = (
    update(_COUNTERS)
    .where(*_COUNTER_KEY)
    .values(used=_COUNTERS.c.used + bindparam("b_used"), held=_COUNTERS.c.held + bindparam("b_held"))
)
_RECORD_BY_KEY = select(_RECORDS.c.request_digest, _RECORDS.c.response).where(
    _RECORDS.c.account_id == bindparam("b_account"), _RECORDS.c.idempotency_key == bindparam("b_idempotency_key")
)
_INSERT_RECORD = _RECORDS.insert()
_RESERVATION_BY_REQUEST = select(_RESERVATIONS).where(
    _RESERVATIONS.c.account_id == bindparam("b_account"), _RESERVATIONS.c.request_id == bindparam("b_request_id")
)
_LOCK_RESERVATION = _RESERVATION_BY_REQUEST.with_for_update()
_LOCK_COUNTER_OF_RESERVATION = (
    select(_COUNTERS.c.used)
    .where(
        _COUNTERS.c.account_id == bindparam("b_account"),
        tuple_(_COUNTERS.c.key, _COUNTERS.c.period_start).in_(
            select(_RESERVATIONS.c.key, _RESERVATIONS.c.period_start).where(
                _RESERVATIONS.c.account_id == bindparam("b_account"),
                _RESERVATIONS.c.request_id == bindparam("b_request_id"),
            )
        ),
    )
    .with_for_update(of=_COUNTERS)
)
_UPDATE_RESERVATION = update(_RESERVATIONS).where(_RESERVATIONS.c.id == bindparam("b_id"))
# Reserve's and commit's statements, run on SQLite's driver directly (billing/sql.py ``Prepared``): the hottest writes.
_COUNTER_COLUMNS = ["account_id", "key", "period_start", "period_end", "used", "held"]
_RESERVATION_COLUMNS = [column.key for column in _RESERVATIONS.columns]
# A new record is unrefunded: refunded_at and refund_response are left out, so both are SQL NULL (the JSON type would
# write the text 'null', encoded per row; both read back as None).
_RECORD_COLUMNS = [
    "id",
    "account_id",
    "key",
    "operation",
    "amount",
    "period_start",
    "idempotency_key",
    "request_digest",
    "response",
    "created_at",
]
_PREPARED_UPSERT_ADD = Prepared(_UPSERT_ADD_TO_COUNTER, column_keys=_COUNTER_COLUMNS)
_PREPARED_ADD = Prepared(_ADD_TO_COUNTER)
# Reserve's replay, commit and release read a reservation's answer fields only: its account and timestamps would be
# converted (a UUID, two datetimes) for nothing.
_PREPARED_RESERVATION_BY_REQUEST = Prepared(
    select(*(c for c in _RESERVATIONS.c if c.key not in {"account_id", "created_at", "updated_at"})).where(
        _RESERVATIONS.c.account_id == bindparam("b_account"), _RESERVATIONS.c.request_id == bindparam("b_request_id")
    )
)
# Whether a request_id is taken (the batched reserves' replay check), with no columns to convert.
_PREPARED_RESERVATION_TAKEN = Prepared(
    select(literal_column("1")).where(
        _RESERVATIONS.c.account_id == bindparam("b_account"), _RESERVATIONS.c.request_id == bindparam("b_request_id")
    )
)
_PREPARED_INSERT_NEW_RESERVATION = Prepared(
    {
        dialect: upsert_insert(dialect, _RESERVATIONS)
        .on_conflict_do_nothing(index_elements=["account_id", "request_id"])
        .returning(_RESERVATIONS.c.id)
        for dialect in ("sqlite", "postgresql")
    },
    column_keys=_RESERVATION_COLUMNS,
)
_PREPARED_COMMIT_RESERVATION = Prepared(
    _UPDATE_RESERVATION, column_keys=["status", "committed_amount", "history_id", "updated_at"]
)
_PREPARED_INSERT_RECORD = Prepared(_INSERT_RECORD, column_keys=_RECORD_COLUMNS)
_PREPARED_INSERT_RESERVATION_UNLESS_TAKEN = Prepared(
    upsert_insert("sqlite", _RESERVATIONS).on_conflict_do_nothing(index_elements=["account_id", "request_id"]),
    column_keys=_RESERVATION_COLUMNS,
)
_SAVEPOINT_RESERVES, _ROLLBACK_TO_RESERVES, _RELEASE_RESERVES = (
    "SAVEPOINT reserve_batch",
    "ROLLBACK TO SAVEPOINT reserve_batch",
    "RELEASE SAVEPOINT reserve_batch",
)
_PREPARED_INSERT_COUNTER = Prepared(_INSERT_COUNTER, column_keys=_COUNTER_COLUMNS)
_PREPARED_LOCK_COUNTER = Prepared(_LOCK_COUNTER)
_PREPARED_RECORD_BY_KEY = Prepared(_RECORD_BY_KEY)


def _counter_params(account_id: uuid.UUID, key: str, period_start: datetime) -> dict[str, Any]:
    return {"b_account": account_id, "b_key": key, "b_start": period_start}


def _lock_counter(connection: Connection, account_id: uuid.UUID, key: str, period: Period) -> tuple[int, int]:
    """(used, held) of the counter, created at zero if absent, under the row lock (PostgreSQL; SQLite: the
    transaction already holds the write lock)."""
    _PREPARED_INSERT_COUNTER.run(
        connection,
        {
            "account_id": account_id,
            "key": key,
            "period_start": period.start,
            "period_end": period.end,
            "used": 0,
            "held": 0,
        },
    )
    [row] = _PREPARED_LOCK_COUNTER.rows(connection, _counter_params(account_id, key, period.start))
    return int(row.used), int(row.held)


def _add_to_counter(
    connection: Connection, account_id: uuid.UUID, key: str, period_start: datetime, *, used: int = 0, held: int = 0
) -> None:
    _PREPARED_ADD.run(connection, {**_counter_params(account_id, key, period_start), "b_used": used, "b_held": held})


def _add_to_counters(connection: Connection, changes: dict[tuple[uuid.UUID, str, datetime], tuple[int, int]]) -> None:
    """A batch's additions, (used, held) by counter (account, key, period start): one statement per counter."""
    for (account_id, key, period_start), (used, held) in changes.items():
        _add_to_counter(connection, account_id, key, period_start, used=used, held=held)


def _counter_is(account_id: uuid.UUID, key: str, period_start: datetime) -> Any:
    return (
        (_COUNTERS.c.account_id == account_id) & (_COUNTERS.c.key == key) & (_COUNTERS.c.period_start == period_start)
    )


def _lock_gauge(connection: Connection, account_id: uuid.UUID, key: str, now: datetime) -> int:
    connection.execute(
        upsert_insert(connection.dialect.name, _GAUGES)
        .values(account_id=account_id, key=key, used=0, updated_at=now)
        .on_conflict_do_nothing(index_elements=["account_id", "key"])
    )
    used = connection.execute(
        select(_GAUGES.c.used).where(_GAUGES.c.account_id == account_id, _GAUGES.c.key == key).with_for_update()
    ).scalar_one()
    return int(used)


def _replayed(connection: Connection, account_id: uuid.UUID, idempotency_key: str, digest: str) -> Any:
    rows = _PREPARED_RECORD_BY_KEY.rows(connection, {"b_account": account_id, "b_idempotency_key": idempotency_key})
    if not rows:
        return None
    row = rows[0]
    if row.request_digest != digest:
        raise IdempotencyConflict(
            "this idempotency_key was used before with a different request", field="idempotency_key"
        )
    return row.response


def _release_expired(connection: Connection, account_id: uuid.UUID, key: str, period: Period, now: datetime) -> int:
    """Free the holds of this counter whose TTL has passed (the caller holds the counter lock); how much was freed."""
    expired = connection.execute(
        update(_RESERVATIONS)
        .where(
            _RESERVATIONS.c.account_id == account_id,
            _RESERVATIONS.c.key == key,
            _RESERVATIONS.c.period_start == period.start,
            _RESERVATIONS.c.status == ReservationStatus.HELD.value,
            _RESERVATIONS.c.expires_at <= now,
        )
        .values(status=ReservationStatus.EXPIRED.value, updated_at=now)
        .returning(_RESERVATIONS.c.amount)
    ).all()
    freed = sum(int(row.amount) for row in expired)
    if freed:
        connection.execute(
            update(_COUNTERS).where(_counter_is(account_id, key, period.start)).values(held=_COUNTERS.c.held - freed)
        )
    return freed


def _check(
    connection: Connection,
    *,
    account_id: uuid.UUID,
    key: str,
    period: Period,
    limit: EffectiveLimit,
    used: int,
    held: int,
    amount: int,
    now: datetime,
) -> int:
    """Refuse if ``amount`` does not fit; expired holds are freed first when they are what stands in the way.
    Returns the held amount after any freeing."""
    if limit.allows(used + held + amount):
        return held
    if held:
        held -= _release_expired(connection, account_id, key, period, now)
        if limit.allows(used + held + amount):
            return held
    assert limit.limit is not None
    raise SubscriptionLimitReached(key=key, limit=limit.limit, used=used + held)


async def _written(state: BillingState, snapshot: AccountSnapshot, job: Callable[[Connection], T]) -> T:
    """Run the write; the account's cached limits report is dropped, so this process reads its own writes."""
    try:
        return await state.writer.run(job, lane=snapshot.account_id)
    finally:
        state.reports.discard(snapshot.account_id)


# -- consume / refund -------------------------------------------------------------------------------------------
async def consume(
    state: BillingState, snapshot: AccountSnapshot, *, key: str, amount: int, idempotency_key: str
) -> dict[str, Any]:
    _require_kind(snapshot, key, QuotaKind.MONTHLY)
    _require_runs_allowed(snapshot)
    now = billing_now(state, snapshot)
    period = _period(snapshot, now)
    limit = effective_limit(snapshot.facts, key)
    digest = request_digest(op="consume", key=key, amount=amount)
    account_id = snapshot.account_id

    def job(connection: Connection) -> dict[str, Any]:
        used, held = _lock_counter(connection, account_id, key, period)
        replay = _replayed(connection, account_id, idempotency_key, digest)
        if replay is not None:
            return cast(dict[str, Any], replay)
        _check(
            connection,
            account_id=account_id,
            key=key,
            period=period,
            limit=limit,
            used=used,
            held=held,
            amount=amount,
            now=now,
        )
        _add_to_counter(connection, account_id, key, period.start, used=amount)
        history_id = ordered_id()
        response = {
            "history_id": str(history_id),
            "key": key,
            "amount": amount,
            "period_start": period.start.isoformat(),
            "period_end": period.end.isoformat(),
            **_limit_entry(limit, used + amount),
        }
        _insert_record(
            connection,
            history_id,
            account_id,
            key,
            UsageOperation.CONSUME,
            amount,
            period,
            idempotency_key,
            digest,
            response,
            now,
        )
        return response

    return await _written(state, snapshot, job)


def _record_values(
    history_id: uuid.UUID,
    account_id: uuid.UUID,
    key: str,
    operation: UsageOperation,
    amount: int,
    period: Period | None,
    idempotency_key: str | None,
    digest: str,
    response: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    return {
        "id": history_id,
        "account_id": account_id,
        "key": key,
        "operation": operation.value,
        "amount": amount,
        "period_start": period.start if period else None,
        "idempotency_key": idempotency_key,
        "request_digest": digest,
        "response": response,
        "created_at": now,
    }


def _insert_record(
    connection: Connection,
    history_id: uuid.UUID,
    account_id: uuid.UUID,
    key: str,
    operation: UsageOperation,
    amount: int,
    period: Period | None,
    idempotency_key: str | None,
    digest: str,
    response: dict[str, Any],
    now: datetime,
) -> None:
    _PREPARED_INSERT_RECORD.run(
        connection,
        _record_values(history_id, account_id, key, operation, amount, period, idempotency_key, digest, response, now),
    )


async def refund(state: BillingState, snapshot: AccountSnapshot, *, history_id: uuid.UUID) -> dict[str, Any]:
    """Reverse exactly one consumption (or commit), once; a second refund answers the first."""
    now = billing_now(state, snapshot)
    account_id = snapshot.account_id

    def job(connection: Connection) -> dict[str, Any]:
        record = connection.execute(
            select(_RECORDS).where(_RECORDS.c.id == history_id, _RECORDS.c.account_id == account_id)
        ).first()
        if record is None:
            raise UsageRecordNotFound(f"no usage record {history_id} on this account", field="history_id")
        if record.operation not in (UsageOperation.CONSUME.value, UsageOperation.COMMIT.value):
            raise NotRefundable("only consumptions and commits can be refunded", field="history_id")
        period = Period(record.period_start, record.period_start)  # the counter is named by its start
        _lock_counter_existing(connection, account_id, record.key, record.period_start)
        locked = connection.execute(
            select(_RECORDS.c.refund_response).where(_RECORDS.c.id == history_id).with_for_update()
        ).one()
        if locked.refund_response is not None:
            return cast(dict[str, Any], locked.refund_response)
        amount = int(record.amount)
        connection.execute(
            update(_COUNTERS)
            .where(_counter_is(account_id, record.key, period.start))
            .values(
                used=func.max(_COUNTERS.c.used - amount, 0)
                if connection.dialect.name == "sqlite"
                else func.greatest(_COUNTERS.c.used - amount, 0)
            )
        )
        response = {
            "history_id": str(history_id),
            "key": record.key,
            "refunded": amount,
            "refunded_at": now.isoformat(),
        }
        connection.execute(
            update(_RECORDS).where(_RECORDS.c.id == history_id).values(refunded_at=now, refund_response=response)
        )
        return response

    return await _written(state, snapshot, job)


def _lock_counter_existing(connection: Connection, account_id: uuid.UUID, key: str, period_start: datetime) -> None:
    connection.execute(_LOCK_COUNTER, _counter_params(account_id, key, period_start))


# -- reserve / commit / release ---------------------------------------------------------------------------------
def _reservation_body(row: Any) -> dict[str, Any]:
    body = {
        "reservation_id": str(row.id),
        "request_id": row.request_id,
        "key": row.key,
        "amount": int(row.amount),
        "status": row.status,
        "expires_at": row.expires_at.isoformat(),
        "period_start": row.period_start.isoformat(),
    }
    if row.committed_amount is not None:
        body.update(committed=int(row.committed_amount), history_id=str(row.history_id))
    return body


async def reserve(
    state: BillingState, snapshot: AccountSnapshot, *, key: str, amount: int, request_id: str, ttl_seconds: int
) -> dict[str, Any]:
    _require_kind(snapshot, key, QuotaKind.MONTHLY)
    _require_runs_allowed(snapshot)
    now = billing_now(state, snapshot)
    period = _period(snapshot, now)
    limit = effective_limit(snapshot.facts, key)
    digest = request_digest(op="reserve", key=key, amount=amount, ttl_seconds=ttl_seconds)
    account_id = snapshot.account_id
    values = {
        "id": ordered_id(),
        "account_id": account_id,
        "key": key,
        "amount": amount,
        "period_start": period.start,
        "request_id": request_id,
        "request_digest": digest,
        "status": ReservationStatus.HELD.value,
        "expires_at": now + timedelta(seconds=ttl_seconds),
        "committed_amount": None,
        "history_id": None,
        "created_at": now,
        "updated_at": now,
    }

    def job(connection: Connection) -> dict[str, Any]:
        # Hold first (which takes the counter's lock), then look for a replay and check, under that lock: a refusal
        # below undoes the hold and the reservation with everything else; a replay takes its hold back and answers
        # the first.
        [(used, held_after)] = _PREPARED_UPSERT_ADD.rows(
            connection,
            {
                "account_id": account_id,
                "key": key,
                "period_start": period.start,
                "period_end": period.end,
                "used": 0,
                "held": amount,
            },
        )
        # The reservation goes in before the check (a refusal undoes it with the hold); a request_id already taken
        # inserts nothing, and is a replay.
        if not _PREPARED_INSERT_NEW_RESERVATION.rows(connection, values):
            [existing] = _PREPARED_RESERVATION_BY_REQUEST.rows(
                connection, {"b_account": account_id, "b_request_id": request_id}
            )
            if existing.request_digest != digest:
                raise IdempotencyConflict(
                    "this request_id was used before with a different request", field="request_id"
                )
            _add_to_counter(connection, account_id, key, period.start, held=-amount)
            return _reservation_body(existing)
        held = _check(
            connection,
            account_id=account_id,
            key=key,
            period=period,
            limit=limit,
            used=int(used),
            held=int(held_after) - amount,
            amount=amount,
            now=now,
        )
        return _held_body(values, limit, int(used), held)

    return await _written(state, snapshot, BatchedJob(_RESERVE_BATCH, _ReserveArgs(values, period, limit), job))


def _held_body(values: dict[str, Any], limit: EffectiveLimit, used: int, held_before: int) -> dict[str, Any]:
    """A new reservation's answer: it, and where its counter stands with its hold."""
    body = _reservation_body(_Row(values))
    body.update(_limit_entry(limit, used + held_before + int(values["amount"])))
    return body


class _ReserveArgs(NamedTuple):
    values: dict[str, Any]  # the reservation's columns
    period: Period
    limit: EffectiveLimit


class _ReserveBatch:
    """A batch's plain reserves: each holds and inserts its reservation when its request_id is new and the hold fits
    (in the batch's order, as the jobs one by one would); anything else is deferred to the reserve's job (a replay,
    a refusal, expired holds to free first). On PostgreSQL one call of ``billing_reserve_batch`` (migration 0014);
    on SQLite a statement per counter and one insert for all, which skips any request_id already taken: when it
    inserted every reservation, none was a replay and the answers stand (the usual case); otherwise it is undone
    and the batch written again with a lookup per call, so that a replay is deferred to its job."""

    def write_sqlite(self, connection: Connection, args: Sequence[_ReserveArgs]) -> list[Any]:
        driver = connection.connection.driver_connection
        assert driver is not None
        driver.execute(_SAVEPOINT_RESERVES)
        answers = self._write_sqlite(connection, args, look_up=False)
        if answers is None:  # a request_id was taken: undone, and written again looking each one up
            driver.execute(_ROLLBACK_TO_RESERVES)
            answers = self._write_sqlite(connection, args, look_up=True)
            assert answers is not None  # (the lookups left only request_ids not taken)
        driver.execute(_RELEASE_RESERVES)
        return answers

    def _write_sqlite(self, connection: Connection, args: Sequence[_ReserveArgs], *, look_up: bool) -> list[Any] | None:
        """The batch's answers; None when ``look_up`` is off and a reservation was not inserted (its request_id
        taken), the writes then to be undone."""
        answers: list[Any] = []
        counters: dict[tuple[uuid.UUID, str, datetime], list[int]] = {}  # (used, held) as the batch goes
        holds: dict[tuple[uuid.UUID, str, datetime], int] = {}
        seen: set[tuple[uuid.UUID, str]] = set()
        inserted: list[dict[str, Any]] = []
        for arg in args:
            values = arg.values
            account_id, request_id, amount = values["account_id"], values["request_id"], int(values["amount"])
            if (account_id, request_id) in seen or (
                look_up
                and _PREPARED_RESERVATION_TAKEN.rows(connection, {"b_account": account_id, "b_request_id": request_id})
            ):
                answers.append(DEFERRED)  # a replay (of an earlier batch's reservation, or of this one's)
                continue
            seen.add((account_id, request_id))
            counter_key = (account_id, values["key"], arg.period.start)
            counter = counters.get(counter_key)
            if counter is None:
                counter = counters[counter_key] = list(_lock_counter(connection, account_id, values["key"], arg.period))
            used, held = counter
            if not arg.limit.allows(used + held + amount):
                answers.append(DEFERRED)
                continue
            counter[1] = held + amount
            holds[counter_key] = holds.get(counter_key, 0) + amount
            inserted.append(values)
            answers.append(_held_body(values, arg.limit, used, held))
        if inserted and _PREPARED_INSERT_RESERVATION_UNLESS_TAKEN.run_many(connection, inserted) != len(inserted):
            return None
        _add_to_counters(connection, {counter: (0, held) for counter, held in holds.items()})
        return answers

    _CALL = (
        "SELECT b.o_used, b.o_held FROM billing_reserve_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        " WITH ORDINALITY AS b(o_used, o_held, n) ORDER BY b.n"
    )

    async def write(self, driver: Any, args: Sequence[_ReserveArgs]) -> list[Any]:
        rows = await driver.fetch(
            self._CALL,
            [arg.values["account_id"] for arg in args],
            [arg.values["key"] for arg in args],
            [arg.period.start for arg in args],
            [arg.period.end for arg in args],
            [arg.values["amount"] for arg in args],
            [arg.limit.limit for arg in args],
            [arg.values["id"] for arg in args],
            [arg.values["request_id"] for arg in args],
            [arg.values["request_digest"] for arg in args],
            [arg.values["expires_at"] for arg in args],
            [arg.values["created_at"] for arg in args],
            ReservationStatus.HELD.value,
        )
        return [
            DEFERRED
            if used is None
            else _held_body(arg.values, arg.limit, int(used), int(held) - int(arg.values["amount"]))
            for arg, (used, held) in zip(args, rows, strict=True)
        ]


_RESERVE_BATCH = _ReserveBatch()


class _Row:
    """Attribute access over a dict of column values (a reservation just inserted)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


def _locked_reservation(connection: Connection, account_id: uuid.UUID, request_id: str) -> Any:
    """The reservation under its counter's lock and its own (counter first, everywhere, so writers never deadlock)."""
    params = {"b_account": account_id, "b_request_id": request_id}
    if connection.dialect.name == "sqlite":  # the batch's transaction holds the database's write lock already
        rows = _PREPARED_RESERVATION_BY_REQUEST.rows(connection, params)
        if not rows:
            raise _reservation_not_found(request_id)
        return rows[0]
    # The counter's lock found through the reservation in one statement, then the reservation's own.
    if connection.execute(_LOCK_COUNTER_OF_RESERVATION, params).first() is None:
        raise _reservation_not_found(request_id)  # (every reservation's counter exists: reserve made it)
    return connection.execute(_LOCK_RESERVATION, params).one()


def _reservation_not_found(request_id: str) -> ReservationNotFound:
    return ReservationNotFound(f"no reservation with request_id {request_id!r} on this account", field="request_id")


async def commit(state: BillingState, snapshot: AccountSnapshot, *, request_id: str, actual: int) -> dict[str, Any]:
    """Turn the hold into usage of ``actual`` (at most the amount held) and free the rest. A replay with the same
    ``actual`` answers the first commit; commit after release or expiry is refused."""
    now = billing_now(state, snapshot)
    account_id = snapshot.account_id
    history_id = ordered_id()
    args = _CommitArgs(
        account_id,
        request_id,
        actual,
        history_id,
        request_digest(op="commit", request_id=request_id, actual=actual),
        now,
    )

    def job(connection: Connection) -> dict[str, Any]:
        row = _locked_reservation(connection, account_id, request_id)
        amount = int(row.amount)
        if row.status == ReservationStatus.COMMITTED.value:
            if int(row.committed_amount) != actual:
                raise IdempotencyConflict("this reservation was committed with a different actual", field="actual")
            return _commit_body(row.history_id, request_id, row.key, actual, amount)
        if row.status != ReservationStatus.HELD.value or row.expires_at <= now:
            state_now = ReservationStatus.EXPIRED.value if row.status == ReservationStatus.HELD.value else row.status
            raise ReservationClosed(f"the reservation is {state_now}; reserve again", field="request_id")
        if actual > amount:
            raise ValidationFailed(
                f"actual ({actual}) is more than the reservation holds ({amount})",
                field="actual",
                code="commit_exceeds_reservation",
            )
        _add_to_counter(connection, account_id, row.key, row.period_start, used=actual, held=-amount)
        _PREPARED_COMMIT_RESERVATION.run(connection, _committed_reservation(row.id, args))
        body = _commit_body(history_id, request_id, row.key, actual, amount)
        _PREPARED_INSERT_RECORD.run(connection, _commit_record(args, row.key, row.period_start, body))
        return body

    return await _written(state, snapshot, BatchedJob(_COMMIT_BATCH, args, job))


def _commit_body(history_id: uuid.UUID, request_id: str, key: str, actual: int, amount: int) -> dict[str, Any]:
    return {
        "history_id": str(history_id),
        "request_id": request_id,
        "key": key,
        "committed": actual,
        "refunded": amount - actual,
        "status": ReservationStatus.COMMITTED.value,
    }


class _CommitArgs(NamedTuple):
    account_id: uuid.UUID
    request_id: str
    actual: int
    history_id: uuid.UUID
    digest: str
    now: datetime


def _committed_reservation(reservation_id: uuid.UUID, args: _CommitArgs) -> dict[str, Any]:
    """The reservation's columns once committed (``_PREPARED_COMMIT_RESERVATION``'s parameters)."""
    return {
        "b_id": reservation_id,
        "status": ReservationStatus.COMMITTED.value,
        "committed_amount": args.actual,
        "history_id": args.history_id,
        "updated_at": args.now,
    }


def _commit_record(args: _CommitArgs, key: str, period_start: datetime, body: dict[str, Any]) -> dict[str, Any]:
    """The usage record of a commit (its history_id), answered to a replay of its reservation."""
    period = Period(period_start, period_start)  # the counter is named by its start
    return _record_values(
        args.history_id,
        args.account_id,
        key,
        UsageOperation.COMMIT,
        args.actual,
        period,
        _commit_idempotency_key(args.request_id),
        args.digest,
        body,
        args.now,
    )


def _commit_idempotency_key(request_id: str) -> str:
    return f"reservation:{request_id}"


def _commit_held_sqlite(connection: Connection, args: Sequence[_CommitArgs]) -> list[tuple[str, int, datetime] | None]:
    """SQLite's batched commit of every reservation that is held, unexpired and holds at least ``actual``, in one
    ``UPDATE … FROM`` the batch's calls: per call what its reservation held (key, amount, period start), or None
    when it was not plain and is left as it was. A reservation named twice in the batch is committed by its first
    call only (the second's job then finds it committed)."""
    bind_uuid, read_datetime, bind_datetime = _commit_held_processors(connection.dialect)
    firsts: dict[tuple[str, str], int] = {}
    values: list[Any] = []
    for position, arg in enumerate(args):
        named = (bind_uuid(arg.account_id), arg.request_id)
        if named in firsts:
            continue
        firsts[named] = position
        values += (named[0], arg.request_id, arg.actual, bind_uuid(arg.history_id), bind_datetime(arg.now))
    values += (ReservationStatus.COMMITTED.value, ReservationStatus.HELD.value)
    driver = connection.connection.driver_connection
    assert driver is not None
    fetched = driver.execute(_commit_held_sql(len(firsts)), values).fetchall()
    held: list[tuple[str, int, datetime] | None] = [None] * len(args)
    for account_text, request_id, key, amount, period_start in fetched:
        held[firsts[(account_text, request_id)]] = (key, int(amount), read_datetime(period_start))
    return held


@functools.cache
def _commit_held_processors(dialect: Any) -> tuple[Callable[[Any], Any], Callable[[Any], Any], Callable[[Any], Any]]:
    """The column types' own conversions: a UUID bound, a period start read back, a moment bound."""
    return (
        _RESERVATIONS.c.account_id.type._cached_bind_processor(dialect) or (lambda value: value),
        _RESERVATIONS.c.period_start.type._cached_result_processor(dialect, None) or (lambda value: value),
        _RESERVATIONS.c.expires_at.type._cached_bind_processor(dialect) or (lambda value: value),
    )


@functools.cache
def _commit_held_sql(calls: int) -> str:
    """The batched commit's statement for ``calls`` calls (one text per batch size: SQLite's driver caches each)."""
    rows = ", ".join(["(?, ?, ?, ?, ?)"] * calls)
    table = _RESERVATIONS.name  # the model's names, as the events' insert takes them
    # placeholders and names only are formatted in; the statuses are bound after the calls' values (SET, then WHERE)
    return (
        f"WITH calls(account_id, request_id, actual, history_id, now) AS (VALUES {rows}) "  # noqa: S608
        f"UPDATE {table} SET status = ?, committed_amount = calls.actual, history_id = calls.history_id, "
        f"updated_at = calls.now FROM calls WHERE {table}.account_id = calls.account_id "
        f"AND {table}.request_id = calls.request_id AND {table}.status = ? AND {table}.expires_at > calls.now "
        f"AND {table}.amount >= calls.actual RETURNING {table}.account_id, {table}.request_id, {table}.key, "
        f"{table}.amount, {table}.period_start"
    )


class _CommitBatch:
    """A batch's plain commits: each whose reservation is held, unexpired and holds at least ``actual`` is committed
    with its usage record; anything else (a replay, a closed or unknown reservation, too large an actual) is deferred
    to the commit's job. On PostgreSQL one call of ``billing_commit_batch`` (migration 0014; the answer below built
    alike in SQL); on SQLite one ``UPDATE … FROM`` the batch's calls that commits each reservation only when it is
    plain (and says what it held), a statement per counter, and one insert of all the usage records."""

    def write_sqlite(self, connection: Connection, args: Sequence[_CommitArgs]) -> list[Any]:
        answers: list[Any] = []
        counters: dict[tuple[uuid.UUID, str, datetime], list[int]] = {}  # (used, held) to add
        records: list[dict[str, Any]] = []
        for arg, row in zip(args, _commit_held_sqlite(connection, args), strict=True):
            if row is None:
                answers.append(DEFERRED)  # not plain: the job says why (or answers the replay)
                continue
            key, amount, period_start = row
            change = counters.setdefault((arg.account_id, key, period_start), [0, 0])
            change[0] += arg.actual
            change[1] -= amount
            body = _commit_body(arg.history_id, arg.request_id, key, arg.actual, amount)
            records.append(_commit_record(arg, key, period_start, body))
            answers.append(body)
        _add_to_counters(connection, {counter: (used, held) for counter, (used, held) in counters.items()})
        if records:
            _PREPARED_INSERT_RECORD.run_many(connection, records)
        return answers

    _CALL = (
        "SELECT b.o_key, b.o_amount FROM billing_commit_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        " WITH ORDINALITY AS b(o_key, o_amount, n) ORDER BY b.n"
    )

    async def write(self, driver: Any, args: Sequence[_CommitArgs]) -> list[Any]:
        rows = await driver.fetch(
            self._CALL,
            [arg.account_id for arg in args],
            [arg.request_id for arg in args],
            [arg.actual for arg in args],
            [arg.history_id for arg in args],
            [arg.now for arg in args],
            [_commit_idempotency_key(arg.request_id) for arg in args],
            [arg.digest for arg in args],
            ReservationStatus.HELD.value,
            ReservationStatus.COMMITTED.value,
            UsageOperation.COMMIT.value,
        )
        return [
            DEFERRED if key is None else _commit_body(arg.history_id, arg.request_id, key, arg.actual, int(amount))
            for arg, (key, amount) in zip(args, rows, strict=True)
        ]


_COMMIT_BATCH = _CommitBatch()


async def release(state: BillingState, snapshot: AccountSnapshot, *, request_id: str) -> dict[str, Any]:
    """Free an uncommitted hold. Idempotent; after a commit (or expiry) it changes nothing."""
    now = billing_now(state, snapshot)
    account_id = snapshot.account_id

    def job(connection: Connection) -> dict[str, Any]:
        row = _locked_reservation(connection, account_id, request_id)
        if row.status != ReservationStatus.HELD.value:
            return {"request_id": request_id, "key": row.key, "status": row.status, "released": 0}
        amount = int(row.amount)
        connection.execute(
            update(_COUNTERS)
            .where(_counter_is(account_id, row.key, row.period_start))
            .values(held=_COUNTERS.c.held - amount)
        )
        connection.execute(
            update(_RESERVATIONS)
            .where(_RESERVATIONS.c.id == row.id)
            .values(status=ReservationStatus.RELEASED.value, updated_at=now)
        )
        return {
            "request_id": request_id,
            "key": row.key,
            "status": ReservationStatus.RELEASED.value,
            "released": amount,
        }

    return await _written(state, snapshot, job)


async def release_expired_holds(
    state: BillingState,
    *,
    now: datetime | None = None,
    account_ids: Sequence[uuid.UUID] | None = None,
    batch: int = 500,
) -> int:
    """The scheduler's job: free holds past their TTL, counter by counter (each under its lock). Returns how many.
    ``account_ids`` None: real time (``now`` default: the process clock), every account not on a test clock; else
    those accounts at ``now`` (a test clock's step)."""
    now = now if now is not None else state.clock()
    query = (
        select(Reservation.account_id, Reservation.key, Reservation.period_start)
        .where(Reservation.status == ReservationStatus.HELD.value, Reservation.expires_at <= now)
        .group_by(Reservation.account_id, Reservation.key, Reservation.period_start)
        .limit(batch)
    )
    if account_ids is None:
        query = query.where(Reservation.account_id.not_in(clocked_account_ids()))
    else:
        query = query.where(Reservation.account_id.in_(list(account_ids)))
    async with state.session_factory() as session:
        counters = (await session.execute(query)).all()
    released = 0
    for account_id, key, period_start in counters:

        def job(
            connection: Connection, account_id: uuid.UUID = account_id, key: str = key, start: datetime = period_start
        ) -> int:
            _lock_counter_existing(connection, account_id, key, start)
            expired = connection.execute(
                update(_RESERVATIONS)
                .where(
                    _RESERVATIONS.c.account_id == account_id,
                    _RESERVATIONS.c.key == key,
                    _RESERVATIONS.c.period_start == start,
                    _RESERVATIONS.c.status == ReservationStatus.HELD.value,
                    _RESERVATIONS.c.expires_at <= now,
                )
                .values(status=ReservationStatus.EXPIRED.value, updated_at=now)
                .returning(_RESERVATIONS.c.amount)
            ).all()
            freed = sum(int(row.amount) for row in expired)
            if freed:
                connection.execute(
                    update(_COUNTERS).where(_counter_is(account_id, key, start)).values(held=_COUNTERS.c.held - freed)
                )
            return len(expired)

        released += await state.writer.run(job, lane=account_id)
        state.reports.discard(account_id)
    return released


# -- gauges -----------------------------------------------------------------------------------------------------
async def set_gauge(state: BillingState, snapshot: AccountSnapshot, *, key: str, value: int) -> dict[str, Any]:
    """The platform states how many there are (a reconciliation): recorded as is, never refused."""
    _require_kind(snapshot, key, QuotaKind.TOTAL)
    now = billing_now(state, snapshot)
    limit = effective_limit(snapshot.facts, key)
    account_id = snapshot.account_id

    def job(connection: Connection) -> dict[str, Any]:
        _lock_gauge(connection, account_id, key, now)
        connection.execute(
            update(_GAUGES)
            .where(_GAUGES.c.account_id == account_id, _GAUGES.c.key == key)
            .values(used=value, updated_at=now)
        )
        return {"key": key, **_limit_entry(limit, value)}

    return await _written(state, snapshot, job)


async def change_gauge(
    state: BillingState, snapshot: AccountSnapshot, *, key: str, delta: int, idempotency_key: str | None
) -> dict[str, Any]:
    """Increment (checked against the limit: a resource is being created) or decrement (never below zero)."""
    _require_kind(snapshot, key, QuotaKind.TOTAL)
    now = billing_now(state, snapshot)
    limit = effective_limit(snapshot.facts, key)
    digest = request_digest(op="gauge", key=key, delta=delta)
    account_id = snapshot.account_id

    def job(connection: Connection) -> dict[str, Any]:
        used = _lock_gauge(connection, account_id, key, now)
        if idempotency_key is not None:
            replay = _replayed(connection, account_id, idempotency_key, digest)
            if replay is not None:
                return cast(dict[str, Any], replay)
        if delta > 0 and not limit.allows(used + delta):
            assert limit.limit is not None
            raise SubscriptionLimitReached(key=key, limit=limit.limit, used=used)
        new_used = max(0, used + delta)
        connection.execute(
            update(_GAUGES)
            .where(_GAUGES.c.account_id == account_id, _GAUGES.c.key == key)
            .values(used=new_used, updated_at=now)
        )
        history_id = ordered_id()
        response = {"history_id": str(history_id), "key": key, "delta": delta, **_limit_entry(limit, new_used)}
        if idempotency_key is not None:
            _insert_record(
                connection,
                history_id,
                account_id,
                key,
                UsageOperation.GAUGE_INCREMENT,
                delta,
                None,
                idempotency_key,
                digest,
                response,
                now,
            )
        return response

    return await _written(state, snapshot, job)


# -- usage events -----------------------------------------------------------------------------------------------
class PricedEvent(NamedTuple):  # a tuple: a batch builds up to 1,000 of them, a frozen dataclass costs 3x more
    event_id: str
    occurred_at: datetime
    agent: str | None
    app: str | None
    line_items: list[dict[str, Any]]
    cost: Decimal
    digest: str


_EVENT_COLUMNS = (
    "account_id",
    "event_id",
    "occurred_at",
    "agent",
    "app",
    "line_items",
    "cost",
    "request_digest",
    "created_at",
)
_LINE_ITEMS_JSON = msgspec.json.Encoder()


@functools.lru_cache(maxsize=64)
def _insert_events_sql(paramstyle: str, rows: int) -> str:
    """One ``INSERT ... VALUES (...), (...) ON CONFLICT (account_id, event_id) DO NOTHING RETURNING event_id`` for
    ``rows`` events (1,000 events are 9,000 parameters: under both engines' limits)."""
    width = len(_EVENT_COLUMNS)
    if paramstyle == "qmark":
        row = "(" + ", ".join("?" * width) + ")"
        values = ", ".join([row] * rows)
    elif paramstyle == "numeric_dollar":
        values = ", ".join("(" + ", ".join(f"${n * width + i + 1}" for i in range(width)) + ")" for n in range(rows))
    else:  # pragma: no cover - the two engines this server runs on
        raise NotImplementedError(paramstyle)
    # Only names from the table's definition and placeholders: no value is ever spliced into the text.
    columns = ", ".join(_EVENT_COLUMNS)
    conflict = "ON CONFLICT (account_id, event_id) DO NOTHING RETURNING event_id"
    return f"INSERT INTO {_EVENTS.name} ({columns}) VALUES {values} {conflict}"  # noqa: S608


def _bind(connection: Connection, column: str) -> Callable[[Any], Any]:
    processor = _EVENTS.c[column].type._cached_bind_processor(connection.dialect)
    return processor if processor is not None else _same


def _same(value: Any) -> Any:
    return value


def _insert_new_events(
    connection: Connection, account_id: uuid.UUID, events: Sequence[PricedEvent], now: datetime
) -> set[str]:
    """Insert the events whose id the account has not recorded yet, in one statement; the ids inserted.

    The values are bound as SQLAlchemy would bind them (each column type's own bind processor), the account id and
    the timestamps once per batch rather than once per row; line items are JSON text either way."""
    account = _bind(connection, "account_id")(account_id)
    created_at = _bind(connection, "created_at")(now)
    stamp, cost_of = _bind(connection, "occurred_at"), _bind(connection, "cost")
    stamps: dict[datetime, Any] = {}
    parameters: list[Any] = []
    for event in events:
        occurred_at = stamps.get(event.occurred_at)
        if occurred_at is None:
            occurred_at = stamps[event.occurred_at] = stamp(event.occurred_at)
        parameters += (
            account,
            event.event_id,
            occurred_at,
            event.agent,
            event.app,
            _LINE_ITEMS_JSON.encode(event.line_items).decode(),
            cost_of(event.cost),
            event.digest,
            created_at,
        )
    statement = _insert_events_sql(connection.dialect.paramstyle, len(events))
    return {row[0] for row in connection.exec_driver_sql(statement, tuple(parameters))}


async def record_events(state: BillingState, snapshot: AccountSnapshot, events: list[PricedEvent]) -> dict[str, Any]:
    """Record a batch; each event is idempotent by its id. A known id with a different body refuses the whole batch
    (nothing of it is written) with the offending index.

    The first occurrence of each id is inserted with ``ON CONFLICT DO NOTHING``; only the ids that were not inserted
    (recorded before, by an earlier batch or a concurrent one) are looked up, and their digests compared. A mismatch
    raises inside the job, so its savepoint (SQLite) or transaction (PostgreSQL) takes the batch's rows back."""
    account_id = snapshot.account_id
    now = billing_now(state, snapshot)

    def job(connection: Connection) -> dict[str, Any]:
        first: dict[str, PricedEvent] = {}
        for event in events:
            first.setdefault(event.event_id, event)
        inserted = _insert_new_events(connection, account_id, list(first.values()), now)
        known: dict[str, str] = {}
        if len(inserted) < len(first):
            recorded = [event_id for event_id in first if event_id not in inserted]
            known = {
                row.event_id: row.request_digest
                for row in connection.execute(
                    select(_EVENTS.c.event_id, _EVENTS.c.request_digest).where(
                        _EVENTS.c.account_id == account_id, _EVENTS.c.event_id.in_(recorded)
                    )
                )
            }
        for index, event in enumerate(events):
            seen = known.get(event.event_id)
            if seen is None and first[event.event_id] is not event:
                seen = first[event.event_id].digest
            if seen is not None and seen != event.digest:
                raise IdempotencyConflict(
                    f"event {index} ({event.event_id!r}) was recorded before with a different body",
                    field=f"events.{index}.id",
                )
        return {
            "accepted": len(inserted),
            "duplicates": len(events) - len(inserted),
            "cost": sum((first[event_id].cost for event_id in inserted), Decimal(0)),
        }

    return await _written(state, snapshot, job)


# -- reads ------------------------------------------------------------------------------------------------------
async def cached_limits_report(state: BillingState, snapshot: AccountSnapshot) -> CachedReport:
    """The limits report, cache-first (see ``BillingState.reports``), with its response body serialised once."""

    async def load() -> CachedReport:
        async with state.session_factory() as session:
            report = await limits_report(session, snapshot, billing_now(state, snapshot))
        return CachedReport(report, json.dumps({"data": report}, separators=(",", ":")).encode())

    return await state.reports.get(snapshot.account_id, load)


async def limits_report(session: AsyncSession, snapshot: AccountSnapshot, now: datetime) -> dict[str, Any]:
    """Seed 004's limits report: the plan, the current period and every key with used, limit and remaining."""
    period = _period(snapshot, now)
    gauges = {
        row.key: int(row.used)
        for row in (
            await session.execute(
                select(UsageGauge.key, UsageGauge.used).where(UsageGauge.account_id == snapshot.account_id)
            )
        ).all()
    }
    counters = {
        row.key: (int(row.used), int(row.held))
        for row in (
            await session.execute(
                select(UsageCounter.key, UsageCounter.used, UsageCounter.held).where(
                    UsageCounter.account_id == snapshot.account_id, UsageCounter.period_start == period.start
                )
            )
        ).all()
    }
    kinds: dict[str, QuotaKind] = {}
    for plan in snapshot.facts.active_plans:
        for key, quota in plan.items():
            kinds.setdefault(key, quota.kind)
    default_plan = snapshot.default_plan_terms.quota_map() if snapshot.default_plan_terms else {}
    keys = set(kinds) | set(snapshot.facts.overrides) | set(gauges) | set(counters)
    if not snapshot.facts.active_plans:
        keys |= set(snapshot.facts.restrictive_defaults) | set(default_plan)
    entries = []
    for key in sorted(keys):
        kind = kinds.get(key) or (default_plan[key].kind if key in default_plan else None)
        if kind is None:
            kind = QuotaKind.MONTHLY if key in counters else QuotaKind.TOTAL
        limit = effective_limit(snapshot.facts, key)
        if kind is QuotaKind.TOTAL:
            entry: dict[str, Any] = {"key": key, "group": kind.value, **_limit_entry(limit, gauges.get(key, 0))}
        else:
            used, held = counters.get(key, (0, 0))
            entry = {"key": key, "group": kind.value, "used": used}
            if held:
                entry["held"] = held
            if limit.limit is not None:
                entry.update(limit=limit.limit, remaining=max(0, limit.limit - used - held))
        entries.append(entry)
    return {
        "plan": snapshot.primary.plan_code if snapshot.primary else None,
        **status_of(snapshot, now),
        "period_start": period.start.isoformat(),
        "period_end": period.end.isoformat(),
        "limits": entries,
    }


def status_of(snapshot: AccountSnapshot, now: datetime) -> dict[str, Any]:
    """Seed 004's billing status with the primary subscription's own status and trial countdown (the banner)."""
    primary = snapshot.primary.subscription if snapshot.primary else None
    return {
        "status": snapshot.billing_status,
        "subscription_status": primary.status if primary else None,
        "trial_ends_at": as_utc(primary.trial_ends_at).isoformat() if primary and primary.trial_ends_at else None,
        "trial_days_remaining": trial_days_remaining(primary.trial_ends_at, now) if primary else None,
    }


def _require_runs_allowed(snapshot: AccountSnapshot) -> None:
    """While the account stands only on past-due or paused subscriptions, new usage is refused (nothing written);
    commits and releases of holds already taken, gauges and refunds go on, so nothing is lost."""
    if not snapshot.platform.billing_enabled:
        return
    blocked = snapshot.blocked_by
    if blocked == SubscriptionStatus.PAST_DUE:
        raise SubscriptionPastDue(field="key")
    if blocked == SubscriptionStatus.PAUSED:
        raise SubscriptionPaused(field="key")


async def check(state: BillingState, snapshot: AccountSnapshot, *, key: str, amount: int) -> dict[str, Any]:
    """A read-only check, from the cached report: would ``amount`` more of ``key`` fit now?"""
    limit = effective_limit(snapshot.facts, key)
    report = (await cached_limits_report(state, snapshot)).report
    entry = next((e for e in report["limits"] if e["key"] == key), None)
    declared = quota_kind(snapshot.facts, key)
    group = entry["group"] if entry else (declared or QuotaKind.MONTHLY).value
    used = (entry["used"] + entry.get("held", 0)) if entry else 0
    return {"key": key, "group": group, "allowed": limit.allows(used + amount), **_limit_entry(limit, used)}


async def usage_history(session: AsyncSession, account_id: uuid.UUID, *, limit: int, offset: int) -> list[UsageRecord]:
    rows = await session.scalars(
        select(UsageRecord)
        .where(UsageRecord.account_id == account_id)
        .order_by(UsageRecord.created_at.desc(), UsageRecord.id)
        .limit(limit)
        .offset(offset)
    )
    return list(rows.all())


def price_line_items(snapshot: AccountSnapshot, items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Decimal]:
    """Each line item with its cost: given, or its quantity times the rate card's unit price for ``type:name``
    (seed 002's per-run charge: tokens by model, calls by integration, storage)."""
    terms = snapshot.rate_card_terms
    rate_card = terms.rate_card if terms else {}
    priced, total = [], Decimal(0)
    for index, item in enumerate(items):
        cost = item.get("cost")
        if cost is None:
            rate_key = f"{item['type']}:{item['name']}"
            unit = rate_card.get(rate_key)
            if unit is None:
                raise ValidationFailed(
                    f"line item {index}: the plan's rate card has no price for {rate_key!r}; send a cost instead",
                    field=f"line_items.{index}",
                    code="unpriced_line_item",
                )
            cost = Decimal(item["quantity"]) * unit
        priced.append({**item, "cost": decimal_text(Decimal(cost))})
        total += Decimal(cost)
    return priced, total
