"""Credits: grants, debits, flex, balances and the period-end rollover. Every write is one transaction that holds the
account's lock from its first read to its commit, so concurrent debits are exact:

- SQLite: the runtime's write gate (writers of this process queue, first come first served) and ``BEGIN IMMEDIATE``
  (the database write lock, so other processes wait too) — as activations do;
- PostgreSQL: the billing account's row ``FOR UPDATE``; every credit write of an account takes it first.

Every write carries an idempotency key: a replay answers the first result, a different request under a used key is
refused (``idempotency_key_reused``). A debit that would go below zero with flex off is refused
(``credits_exhausted``) before anything is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy import (
    JSON,
    Integer,
    String,
    Table,
    and_,
    case,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy import cast as cast_
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.audit import record_audit
from license_server.billing.accounts.models import BillingAccount, Subscription, SubscriptionStatus
from license_server.billing.clocks.service import account_clock, clocked_account_ids
from license_server.billing.credits.burndown import ZERO, CreditKind, burn_down
from license_server.billing.credits.models import (
    CREDIT_SCALE,
    CREDITS,
    MAX_CREDITS,
    CreditDraw,
    CreditGrant,
    CreditMovement,
    MovementKind,
)
from license_server.billing.periods import Period, add_months, period_containing
from license_server.billing.plans.terms import billing_terms
from license_server.billing.sql import upsert_insert
from license_server.clock import Clock, utcnow
from license_server.db.base import UTCDateTime
from license_server.errors import (
    BillingAccountNotFound,
    CreditsExhausted,
    IdempotencyConflict,
    ValidationFailed,
)
from license_server.licenses.models import Plan

if TYPE_CHECKING:
    from license_server.auth.tokens import Actor
    from license_server.billing.state import BillingState

logger = logging.getLogger(__name__)
T = TypeVar("T")
FLEX = "flex"
_GRANTS = cast(Table, CreditGrant.__table__)
_MOVEMENTS = cast(Table, CreditMovement.__table__)


# -- results ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CreditBalance:
    account_id: uuid.UUID
    as_of: datetime
    available: Decimal  # what grants still hold, usable now
    by_kind: dict[CreditKind, Decimal]
    flex_enabled: bool
    period: Period  # the account's current billing period
    flex_used: Decimal  # flex drawn in ``period``: billed in arrears at the next cycle

    @property
    def balance(self) -> Decimal:
        """Flex is negative balance: what grants hold minus the flex not yet invoiced."""
        return self.available - self.flex_used


@dataclass(frozen=True)
class MovementRecord:
    movement: CreditMovement
    draws: list[CreditDraw] = field(default_factory=list)
    grant: CreditGrant | None = None


@dataclass(frozen=True)
class WriteResult:
    record: MovementRecord
    replayed: bool  # True: the key had been used by this same request; this is the first result


# -- transactions -------------------------------------------------------------------------------------------------
async def _in_account_transaction(
    session: AsyncSession, state: BillingState, account_id: uuid.UUID, work: Callable[[], Awaitable[T]]
) -> T:
    """Run ``work`` in one transaction holding ``account_id``'s lock, then commit; anything raised rolls it back.

    ``session`` must hold no uncommitted writes: it is rolled back first (a read-only autobegin ends there).
    """
    await session.rollback()
    try:
        async with state.write_gate:
            if _is_sqlite(session):
                await session.execute(text("BEGIN IMMEDIATE"))
            locked = await session.scalar(
                select(BillingAccount.id).where(BillingAccount.id == account_id).with_for_update()
            )
            if locked is None:
                raise BillingAccountNotFound("no billing account with this id", field="account_id")
            result = await work()
            await session.commit()
            return result
    except BaseException:
        await session.rollback()
        raise


def _is_sqlite(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def _check_amount(amount: Decimal) -> None:
    """The wire schema says the same; services check again for their other callers (the CLI, other services)."""
    if not amount.is_finite() or amount <= ZERO:
        raise ValidationFailed("amount: must be greater than 0", field="amount")
    if not fits_ledger(amount):
        raise ValidationFailed(f"amount: at most {CREDIT_SCALE} decimal places, below {MAX_CREDITS}", field="amount")


def _digest(operation: str, **request: Any) -> str:
    canonical = json.dumps({"operation": operation, **request}, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _amount_text(value: Decimal) -> str:
    return format(value.normalize(), "f")


async def _replayed(
    session: AsyncSession, account_id: uuid.UUID, idempotency_key: str, digest: str
) -> MovementRecord | None:
    movement = await session.scalar(
        select(CreditMovement).where(
            CreditMovement.account_id == account_id, CreditMovement.idempotency_key == idempotency_key
        )
    )
    if movement is None:
        return None
    if movement.request_digest != digest:
        raise IdempotencyConflict("this idempotency key was used for a different request", field="idempotency_key")
    return await _record(session, movement)


async def _record(session: AsyncSession, movement: CreditMovement) -> MovementRecord:
    draws = list(
        await session.scalars(select(CreditDraw).where(CreditDraw.movement_id == movement.id).order_by(CreditDraw.id))
    )
    grant = await session.get(CreditGrant, movement.grant_id) if movement.grant_id is not None else None
    return MovementRecord(movement, draws, grant)


# -- periods ------------------------------------------------------------------------------------------------------
async def current_period(session: AsyncSession, account_id: uuid.UUID, now: datetime) -> Period:
    """The account's monthly period at ``now`` (flex is billed monthly whatever the plan's interval, seed 003):
    anchored at its oldest active subscription, else the calendar month."""
    subscriptions = await session.scalars(
        select(Subscription).where(Subscription.account_id == account_id).order_by(Subscription.created_at)
    )
    for subscription in subscriptions:
        if subscription.is_standing():  # past due and paused too: the periods stay anchored while runs are paused
            return period_containing(now, subscription.anchor_at)
    return period_containing(now)


async def account_cycle(session: AsyncSession, account_id: uuid.UUID, now: datetime) -> Period:
    """The account's included-credit cycle at ``now``: its oldest active subscription's (monthly, or yearly on a yearly
    plan), else the calendar month."""
    rows = await session.execute(
        select(Subscription, Plan.billing)
        .join(Plan, Plan.id == Subscription.plan_id)
        .where(Subscription.account_id == account_id)
        .order_by(Subscription.created_at)
    )
    for subscription, billing in rows:
        if subscription.is_active(now):
            return credit_cycle(now, subscription.anchor_at, billing_terms(billing).interval if billing else "month")
    return period_containing(now)


# -- grants -------------------------------------------------------------------------------------------------------
async def grant_credits(
    session: AsyncSession,
    *,
    state: BillingState,
    actor: Actor,
    account_id: uuid.UUID,
    kind: CreditKind,
    amount: Decimal,
    idempotency_key: str,
    expires_at: datetime | None = None,
    description: str = "",
    clock: Clock = utcnow,
) -> WriteResult:
    """Staff grant credits. Included credits expire at the end of the current period unless a date is given;
    promotional credits need an expiry date; prepaid credits never expire."""
    now = (await account_clock(session, account_id, clock))()
    _check_amount(amount)
    if kind is CreditKind.PREPAID and expires_at is not None:
        raise ValidationFailed("expires_at: prepaid credits never expire", field="expires_at")
    if kind is CreditKind.PROMOTIONAL and expires_at is None:
        raise ValidationFailed("expires_at: promotional credits need an expiry date", field="expires_at")
    if expires_at is not None and expires_at <= now:
        raise ValidationFailed("expires_at: must be in the future", field="expires_at")
    digest = _digest(
        "grant",
        kind=kind.value,
        amount=_amount_text(amount),
        expires_at=expires_at.isoformat() if expires_at else None,
        description=description,
    )

    async def work() -> WriteResult:
        first = await _replayed(session, account_id, idempotency_key, digest)
        if first is not None:
            return WriteResult(first, replayed=True)
        expiry = expires_at
        if kind is CreditKind.INCLUDED and expiry is None:
            expiry = (await account_cycle(session, account_id, now)).end
        grant = CreditGrant(
            account_id=account_id, kind=kind.value, amount=amount, remaining=amount, granted_at=now, expires_at=expiry
        )
        session.add(grant)
        await session.flush()
        movement = CreditMovement(
            account_id=account_id,
            kind=MovementKind.GRANT.value,
            amount=amount,
            flex=ZERO,
            grant_id=grant.id,
            idempotency_key=idempotency_key,
            request_digest=digest,
            description=description,
            extra_metadata={},
            actor=actor.name,
            occurred_at=now,
        )
        session.add(movement)
        await session.flush()
        await record_audit(
            session,
            actor=actor,
            action="billing.credits.grant",
            target_type="billing_account",
            target_id=account_id,
            detail={
                "grant_id": grant.id,
                "kind": kind.value,
                "amount": _amount_text(amount),
                "expires_at": expiry.isoformat() if expiry else None,
            },
            clock=lambda: now,
        )
        return WriteResult(MovementRecord(movement, [], grant), replayed=False)

    return await _in_account_transaction(session, state, account_id, work)


# -- debits -------------------------------------------------------------------------------------------------------
async def debit_credits(
    session: AsyncSession,
    *,
    state: BillingState,
    account_id: uuid.UUID,
    amount: Decimal,
    idempotency_key: str,
    description: str = "",
    metadata: dict[str, Any] | None = None,
    clock: Clock = utcnow,
) -> WriteResult:
    """Burn ``amount`` down the account's grants (included -> promotional -> prepaid), the rest as flex when flex is
    on; with flex off, a debit the grants cannot cover is refused and nothing changes."""
    _check_amount(amount)
    metadata = metadata or {}
    digest = _digest("debit", amount=_amount_text(amount), description=description, metadata=metadata)
    clock = await account_clock(session, account_id, clock)

    async def work() -> WriteResult:
        now = clock()
        first = await _replayed(session, account_id, idempotency_key, digest)
        if first is not None:
            return WriteResult(first, replayed=True)
        # A debit at the first instant of a cycle sees that cycle's included credits, whenever the rollover runs.
        await grant_cycle_credits(session, now=now, account_id=account_id)
        flex_enabled = bool(
            await session.scalar(select(BillingAccount.flex_enabled).where(BillingAccount.id == account_id))
        )
        grants = {grant.id: grant for grant in await _usable_grants(session, account_id, now)}
        burn = burn_down((grant.balance() for grant in grants.values()), amount, now=now)
        if burn.uncovered > ZERO and not flex_enabled:
            raise CreditsExhausted(
                f"{_amount_text(burn.covered)} credits are available and flex billing is off: "
                f"a debit of {_amount_text(amount)} is refused",
                field="amount",
            )
        movement = CreditMovement(
            account_id=account_id,
            kind=MovementKind.DEBIT.value,
            amount=-amount,
            flex=burn.uncovered,
            grant_id=None,
            idempotency_key=idempotency_key,
            request_digest=digest,
            description=description,
            extra_metadata=metadata,
            actor=None,
            occurred_at=now,
        )
        session.add(movement)
        await session.flush()
        draws = [
            CreditDraw(movement_id=movement.id, grant_id=d.grant_id, kind=d.kind.value, amount=d.amount)
            for d in burn.draws
        ]
        if burn.uncovered > ZERO:
            draws.append(CreditDraw(movement_id=movement.id, grant_id=None, kind=FLEX, amount=burn.uncovered))
        session.add_all(draws)
        for draw in burn.draws:
            grants[draw.grant_id].remaining -= draw.amount
        await session.flush()
        return WriteResult(MovementRecord(movement, draws), replayed=False)

    return await _in_account_transaction(session, state, account_id, work)


async def _usable_grants(session: AsyncSession, account_id: uuid.UUID, now: datetime) -> Sequence[CreditGrant]:
    rows = await session.scalars(
        select(CreditGrant).where(
            CreditGrant.account_id == account_id,
            CreditGrant.remaining > ZERO,
            or_(CreditGrant.expires_at.is_(None), CreditGrant.expires_at > now),
        )
    )
    return rows.all()


# -- reads --------------------------------------------------------------------------------------------------------
async def credit_balance(session: AsyncSession, *, account_id: uuid.UUID, clock: Clock = utcnow) -> CreditBalance:
    now = (await account_clock(session, account_id, clock))()
    account = await session.get(BillingAccount, account_id)
    if account is None:
        raise BillingAccountNotFound("no billing account with this id", field="account_id")
    by_kind = dict.fromkeys(CreditKind, ZERO)
    for grant in await _usable_grants(session, account_id, now):
        by_kind[CreditKind(grant.kind)] += grant.remaining
    period = await current_period(session, account_id, now)
    return CreditBalance(
        account_id=account_id,
        as_of=now,
        available=sum(by_kind.values(), ZERO),
        by_kind=by_kind,
        flex_enabled=account.flex_enabled,
        period=period,
        flex_used=await flex_used(session, account_id=account_id, start=period.start, end=period.end),
    )


async def flex_used(session: AsyncSession, *, account_id: uuid.UUID, start: datetime, end: datetime) -> Decimal:
    """Flex credits drawn in [start, end): what the invoice for that period bills in arrears."""
    total = await session.scalar(
        select(func.sum(CreditMovement.flex)).where(
            CreditMovement.account_id == account_id,
            CreditMovement.kind == MovementKind.DEBIT.value,
            CreditMovement.occurred_at >= start,
            CreditMovement.occurred_at < end,
        )
    )
    return total if total is not None else ZERO


async def list_movements(
    session: AsyncSession, *, account_id: uuid.UUID, limit: int, offset: int
) -> tuple[list[MovementRecord], int]:
    """The ledger, newest first, each debit with the grants it drew from."""
    total = await session.scalar(
        select(func.count()).select_from(CreditMovement).where(CreditMovement.account_id == account_id)
    )
    movements = list(
        await session.scalars(
            select(CreditMovement)
            .where(CreditMovement.account_id == account_id)
            .order_by(CreditMovement.id.desc())
            .limit(limit)
            .offset(offset)
        )
    )
    draws: dict[int, list[CreditDraw]] = {movement.id: [] for movement in movements}
    if movements:
        for draw in await session.scalars(
            select(CreditDraw).where(CreditDraw.movement_id.in_(draws)).order_by(CreditDraw.id)
        ):
            draws[draw.movement_id].append(draw)
    grant_ids = {m.grant_id for m in movements if m.grant_id is not None}
    grants = (
        {g.id: g for g in await session.scalars(select(CreditGrant).where(CreditGrant.id.in_(grant_ids)))}
        if grant_ids
        else {}
    )
    records = [
        MovementRecord(m, draws[m.id], grants.get(m.grant_id) if m.grant_id is not None else None) for m in movements
    ]
    return records, int(total or 0)


# -- the period-end rollover --------------------------------------------------------------------------------------
def _in_scope(column: Any, account_ids: Sequence[uuid.UUID] | None) -> Any:
    """Real time's jobs (``account_ids`` None) leave out the accounts on a test clock; a clock's step takes only its
    accounts."""
    return column.not_in(clocked_account_ids()) if account_ids is None else column.in_(list(account_ids))


def _forfeit_due(now: datetime, account_ids: Sequence[uuid.UUID] | None = None) -> Any:
    return and_(
        CreditGrant.remaining > ZERO,
        CreditGrant.expires_at.is_not(None),
        CreditGrant.expires_at <= now,
        _in_scope(CreditGrant.account_id, account_ids),
    )


async def forfeit_expired_grants(
    session: AsyncSession, *, now: datetime, account_ids: Sequence[uuid.UUID] | None = None
) -> int:
    """Write one forfeit movement for every grant that has expired with credits left, and empty it. Set-based; run
    inside the caller's transaction, after it has locked the accounts concerned (see ``roll_over_credits``).
    Running it again finds nothing left to forfeit."""
    due = _forfeit_due(now, account_ids)
    inserted = await session.execute(
        insert(_MOVEMENTS).from_select(
            ["account_id", "kind", "amount", "flex", "grant_id", "description", "metadata", "occurred_at"],
            select(
                CreditGrant.account_id,
                literal(MovementKind.FORFEIT.value, String()),
                -CreditGrant.remaining,
                literal(ZERO, CREDITS),
                CreditGrant.id,
                literal("", String()),
                literal({}, JSON()),
                CreditGrant.expires_at,
            ).where(due),
        )
    )
    await session.execute(update(CreditGrant).where(due).values(remaining=ZERO))
    return int(getattr(inserted, "rowcount", 0) or 0)


def fits_ledger(amount: Decimal) -> bool:
    """Whether the ledger holds ``amount`` exactly: at most 6 decimal places, below a billion credits."""
    return ZERO <= amount < MAX_CREDITS and amount == amount.quantize(Decimal(1).scaleb(-CREDIT_SCALE))


def credit_cycle(now: datetime, anchor: datetime, interval: str) -> Period:
    """The cycle included credits belong to: a month, or twelve for a yearly plan (seed 003: included credits reset
    monthly or annually with the billing cycle), anchored at the subscription's start with month-end clamping.
    ``grant_cycle_credits`` computes the same in SQL; a test holds the two to each other."""
    month = period_containing(now, anchor)
    if interval != "year":
        return month
    anchor = anchor.astimezone(UTC)
    months = (month.start.year - anchor.year) * 12 + (month.start.month - anchor.month)
    first = months // 12 * 12
    return Period(add_months(anchor, first), add_months(anchor, first + 12))


class _MonthArithmetic:
    """``periods.add_months`` and the month index of a timestamp column, in SQL.

    PostgreSQL adds months to a UTC wall-clock timestamp and clamps the day itself. SQLite stores a timestamp as the
    text ``YYYY-MM-DD HH:MM:SS.ffffff`` (UTC) and has no clamping month arithmetic before 3.46, so the date is rebuilt
    from its parts with the day clamped to the target month's length, in that same text form.
    """

    def __init__(self, dialect: str) -> None:
        self.sqlite = dialect == "sqlite"

    def _part(self, column: Any, start: int, length: int, field: str) -> Any:
        if self.sqlite:
            return cast_(func.substr(column, start, length), Integer)
        return cast_(func.extract(field, func.timezone("UTC", column)), Integer)

    def month_index(self, column: Any) -> Any:
        """year * 12 + month - 1"""
        return self._part(column, 1, 4, "year") * 12 + self._part(column, 6, 2, "month") - 1

    def add_months(self, column: Any, months: Any) -> Any:
        if not self.sqlite:
            return func.timezone("UTC", func.timezone("UTC", column) + func.make_interval(0, months))
        index = self.month_index(column) + months
        year, month = index // 12, index % 12 + 1  # index >= 0
        first = func.printf("%04d-%02d-01", year, month)
        month_days = cast_(func.strftime("%d", first, "+1 month", "-1 day"), Integer)
        day = func.min(self._part(column, 9, 2, "day"), month_days)
        date = func.printf("%04d-%02d-%02d", year, month, day)
        return type_coerce(date.op("||")(func.substr(column, 11)), UTCDateTime())  # + the time of day


def _live(now: datetime) -> Any:
    """Active subscriptions, trials included (``Subscription.is_active`` in SQL)."""
    return or_(
        Subscription.status == SubscriptionStatus.ACTIVE.value,
        and_(
            Subscription.status == SubscriptionStatus.TRIALING.value,
            or_(Subscription.trial_ends_at.is_(None), Subscription.trial_ends_at > now),
        ),
    )


async def grant_cycle_credits(
    session: AsyncSession,
    *,
    now: datetime,
    account_id: uuid.UUID | None = None,
    account_ids: Sequence[uuid.UUID] | None = None,
) -> int:
    """Grant every active subscription (trials included) on a plan with included credits that plan's credits for
    its current cycle, expiring at the cycle's end; at most once per subscription and cycle (unique), so running it
    again, or a debit racing the job, grants nothing twice. Set-based: one ``INSERT ... SELECT`` per crediting plan
    (the cycle computed in SQL) and one for their movements. Runs in the caller's transaction; returns how many
    grants it made. A plan whose amount the ledger cannot hold exactly is skipped and logged, never rounded.
    ``account_id``: that account only (a debit's, at its own now); else ``account_ids`` as in ``_in_scope``."""
    if account_id is not None:
        account_ids = [account_id]
    plans = select(Plan.id, Plan.code, Plan.billing)
    if account_ids is not None:  # some accounts (a debit's own, a test clock's): only their plans
        plans = plans.where(
            Plan.id.in_(select(Subscription.plan_id).where(Subscription.account_id.in_(list(account_ids))))
        )
    dialect = session.get_bind().dialect.name
    months = _MonthArithmetic(dialect)
    utc_now = now.astimezone(UTC)
    crediting = False
    for plan_id, code, billing in (await session.execute(plans)).all():
        terms = billing_terms(billing) if billing else None
        if terms is None or terms.included_credits <= ZERO:
            continue
        if not fits_ledger(terms.included_credits):
            logger.error("billing.credits.rollover.unrepresentable_included_credits plan=%s", code)
            continue
        # Months from the anchor to the cycle's start: the calendar months between them, less one while the anchor's
        # day and time are still ahead in the current month; a yearly cycle starts every twelfth.
        elapsed = literal(utc_now.year * 12 + utc_now.month - 1, Integer) - months.month_index(Subscription.anchor_at)
        ahead = case((months.add_months(Subscription.anchor_at, elapsed) > now, 1), else_=0)
        step = 12 if terms.interval == "year" else 1
        started = select(
            Subscription.id.label("subscription_id"),
            Subscription.account_id,
            Subscription.anchor_at,
            ((elapsed - ahead) // step * step).label("months"),
        ).where(_live(now), Subscription.plan_id == plan_id, Subscription.anchor_at <= now)
        started = started.where(_in_scope(Subscription.account_id, account_ids))
        # Materialised, so each row's month count is computed once, not again inside every use of it.
        cycles = started.cte("cycles").prefix_with("MATERIALIZED")
        columns = ["account_id", "subscription_id", "kind", "amount", "remaining", "granted_at", "expires_at"]
        await session.execute(
            upsert_insert(dialect, _GRANTS)
            .from_select(
                [*columns, "cycle_start"],
                select(
                    cycles.c.account_id,
                    cycles.c.subscription_id,
                    literal(CreditKind.INCLUDED.value, String()),
                    literal(terms.included_credits, CREDITS),
                    literal(terms.included_credits, CREDITS),
                    literal(now, UTCDateTime()),
                    months.add_months(cycles.c.anchor_at, cycles.c.months + step),
                    months.add_months(cycles.c.anchor_at, cycles.c.months),
                ).where(cycles.c.months >= 0),  # always (anchor <= now); SQLite needs a WHERE before ON CONFLICT
            )
            .on_conflict_do_nothing(index_elements=["subscription_id", "cycle_start"])
        )
        crediting = True
    if not crediting:
        return 0
    # One grant movement per grant just made (a statement starting with WITH reports no row count on SQLite, so the
    # grants are counted by their movements).
    has_movement = exists().where(CreditMovement.grant_id == CreditGrant.id)
    movements = await session.execute(
        insert(_MOVEMENTS).from_select(
            ["account_id", "kind", "amount", "flex", "grant_id", "description", "metadata", "occurred_at"],
            select(
                CreditGrant.account_id,
                literal(MovementKind.GRANT.value, String()),
                CreditGrant.amount,
                literal(ZERO, CREDITS),
                CreditGrant.id,
                literal("included credits for the cycle", String()),
                literal({}, JSON()),
                CreditGrant.granted_at,
            ).where(
                CreditGrant.granted_at == now,
                CreditGrant.subscription_id.is_not(None),
                ~has_movement,
                _in_scope(CreditGrant.account_id, account_ids),
            ),
        )
    )
    return int(getattr(movements, "rowcount", 0) or 0)


@dataclass(frozen=True)
class RolloverResult:
    forfeited: int
    granted: int


async def roll_over_credits(
    session: AsyncSession, *, state: BillingState, now: datetime, account_ids: Sequence[uuid.UUID] | None = None
) -> RolloverResult:
    """The period end, for every account at once: forfeit what expired grants hold (included credits at their cycle's
    end, promotional credits at their date) and grant each subscribed account its included credits for the new
    cycle. One transaction; on PostgreSQL it first locks, in id order, the accounts whose grants it forfeits, so no
    debit of those accounts is between its read and its write. ``account_ids``: see ``_in_scope``."""
    await session.rollback()
    try:
        async with state.write_gate:
            if _is_sqlite(session):
                await session.execute(text("BEGIN IMMEDIATE"))
            else:
                await session.execute(
                    select(BillingAccount.id)
                    .where(BillingAccount.id.in_(select(CreditGrant.account_id).where(_forfeit_due(now, account_ids))))
                    .order_by(BillingAccount.id)
                    .with_for_update()
                )
            forfeited = await forfeit_expired_grants(session, now=now, account_ids=account_ids)
            granted = await grant_cycle_credits(session, now=now, account_ids=account_ids)
            await session.commit()
    except BaseException:
        await session.rollback()
        raise
    return RolloverResult(forfeited=forfeited, granted=granted)
