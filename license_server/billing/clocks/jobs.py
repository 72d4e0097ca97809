"""Advancing a test clock: the jobs real time runs, run for the clock's accounts at each boundary the advance passes.

``CLOCK_JOBS`` is the registry, in the order each step runs them: holds expire, then subscriptions roll (renewals
apply scheduled downgrades, cancellations and trial ends), then credits roll over (forfeit, then grant the new
cycle's included credits on the plan the renewal left). A domain whose job must follow a clock appends a
``ClockJob`` here (the invoices' ``issue_due_invoices`` goes last, after the renewal it bills).

An advance never jumps: it stops at every instant in between where something falls due for the clock's accounts (a
period end, a trial end or the notice three days before it, a cancellation, an overdue payment, a credit grant's or
a hold's expiry), sets the clock there, and runs every job, so a three-month advance renews three times, each at its
own period end, exactly as real time would.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.audit import record_audit
from license_server.auth.tokens import Actor
from license_server.billing.accounts.models import Subscription, SubscriptionStatus
from license_server.billing.clocks.models import TestClock, TestClockAccount
from license_server.billing.clocks.service import get_clock
from license_server.billing.credits.models import CreditGrant
from license_server.billing.credits.service import roll_over_credits
from license_server.billing.invoices.jobs import issue_due_invoices
from license_server.billing.periods import add_months
from license_server.billing.state import BillingState
from license_server.billing.subscriptions.service import TRIAL_NOTICE, renew_due_subscriptions
from license_server.billing.usage.models import Reservation, ReservationStatus
from license_server.billing.usage.service import release_expired_holds
from license_server.clock import as_utc
from license_server.errors import ValidationFailed

MAX_STEPS = 1000  # an advance stops at most this many times (ten years of monthly renewals for many accounts)


@dataclass(frozen=True)
class ClockJob:
    name: str
    # (session, state, now, account_ids): run the job for those accounts as if real time were ``now``.
    run: Callable[[AsyncSession, BillingState, datetime, Sequence[uuid.UUID]], Awaitable[object]]


async def _release_holds(session: AsyncSession, state: BillingState, now: datetime, ids: Sequence[uuid.UUID]) -> int:
    return await release_expired_holds(state, now=now, account_ids=ids)


async def _renew(session: AsyncSession, state: BillingState, now: datetime, ids: Sequence[uuid.UUID]) -> object:
    return await renew_due_subscriptions(session, now=now, account_ids=ids, state=state)


async def _roll_credits(session: AsyncSession, state: BillingState, now: datetime, ids: Sequence[uuid.UUID]) -> object:
    return await roll_over_credits(session, state=state, now=now, account_ids=ids)


async def _issue_invoices(session: AsyncSession, state: BillingState, now: datetime, ids: Sequence[uuid.UUID]) -> int:
    await session.commit()  # the issuer runs its own transactions
    return await issue_due_invoices(session, now=now, account_ids=ids)  # the default terms (as the settings)


CLOCK_JOBS: tuple[ClockJob, ...] = (
    ClockJob("billing.release_expired_holds", _release_holds),
    ClockJob("billing.subscriptions.renew", _renew),
    ClockJob("billing.credits.rollover", _roll_credits),
    ClockJob("billing.invoices.issue", _issue_invoices),  # last: it bills the period the renewal opened
)


async def _next_boundary(
    session: AsyncSession, account_ids: Sequence[uuid.UUID], after: datetime, until: datetime
) -> datetime | None:
    """The earliest instant in (after, until] at which something falls due for these accounts."""
    ids = list(account_ids)
    candidates: list[datetime] = []
    subscriptions = await session.scalars(
        select(Subscription).where(
            Subscription.account_id.in_(ids), Subscription.status != SubscriptionStatus.CANCELED.value
        )
    )
    for sub in subscriptions:
        moments = [sub.current_period_end, sub.cancel_at, sub.payment_overdue_at]
        if sub.trial_ends_at is not None:
            moments += [sub.trial_ends_at, as_utc(sub.trial_ends_at) - TRIAL_NOTICE]
        candidates += [as_utc(m) for m in moments if m is not None]
    for column, where in (
        (CreditGrant.expires_at, CreditGrant.remaining > 0),
        (Reservation.expires_at, Reservation.status == ReservationStatus.HELD.value),
    ):
        table_account = CreditGrant.account_id if column is CreditGrant.expires_at else Reservation.account_id
        earliest = await session.scalar(
            select(func.min(column)).where(table_account.in_(ids), where, column > after, column <= until)
        )
        if earliest is not None:
            candidates.append(as_utc(earliest))
    due = [moment for moment in candidates if after < moment <= until]
    return min(due) if due else None


@dataclass(frozen=True)
class AdvanceResult:
    clock: TestClock
    steps: list[datetime]  # every instant the clock stopped at, in order (the last is the target)


async def advance_clock(
    session: AsyncSession,
    *,
    state: BillingState,
    actor: Actor,
    clock_id: uuid.UUID,
    to: datetime | None = None,
    months: int = 0,
    days: int = 0,
) -> AdvanceResult:
    """Move the clock forward to ``to`` (or by ``months`` then ``days``), stopping at each boundary in between and
    running ``CLOCK_JOBS`` there for the clock's accounts. Clocks only move forward (``to`` before the clock's time
    is refused). Each step commits, so an advance cut short leaves the clock at the last step it completed,
    consistent, and can be continued."""
    test_clock = await get_clock(session, clock_id)
    start = as_utc(test_clock.frozen_now)
    to = as_utc(to) if to is not None else add_months(start, months) + timedelta(days=days)
    if to < start:
        raise ValidationFailed("a test clock only moves forward", field="to", code="clock_moves_forward_only")
    account_ids = list(
        (await session.scalars(select(TestClockAccount.account_id).where(TestClockAccount.clock_id == clock_id))).all()
    )
    steps: list[datetime] = []
    current = start
    while True:
        if len(steps) >= MAX_STEPS:
            raise ValidationFailed(
                f"the advance would stop more than {MAX_STEPS} times; advance in shorter moves", field="to"
            )
        step = (await _next_boundary(session, account_ids, current, to) if account_ids else None) or to
        test_clock = await get_clock(session, clock_id)
        test_clock.frozen_now = step
        test_clock.updated_at = state.clock()
        await session.commit()
        state.forget_platforms()  # cached snapshots carry the clock's time: drop them in this process
        for job in CLOCK_JOBS:
            if account_ids:
                await job.run(session, state, step, account_ids)
        steps.append(step)
        current = step
        if current >= to:
            break
    await record_audit(
        session,
        actor=actor,
        action="billing.test_clock_advanced",
        target_type="billing_test_clock",
        target_id=clock_id,
        detail={"from": start.isoformat(), "to": to.isoformat(), "steps": len(steps)},
        clock=state.clock,
    )
    await session.commit()
    state.forget_platforms()
    return AdvanceResult(await get_clock(session, clock_id), steps)
