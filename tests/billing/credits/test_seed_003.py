"""Seed 003 (Roboflow credits), number for number, through the ledger on SQLite and PostgreSQL.

The setting of all four examples: a Growth Monthly plan with 150 included credits a month ($399, flex credits at
$3), a billing cycle that starts on the 15th, and 20 prepaid credits bought on January 30th. The period under test is
April 15th to May 14th; the invoice of May 15th bills the plan for the next period and the flex credits of this one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from license_server.auth.tokens import Actor
from license_server.billing.accounts.models import Subscription
from license_server.billing.credits import service
from license_server.billing.credits.burndown import CreditKind
from license_server.billing.plans.terms import billing_terms
from license_server.errors import CreditsExhausted
from license_server.licenses.models import Plan
from license_server.runtime import Runtime
from tests.billing.credits.conftest import AccountFactory
from tests.conftest import MovableClock

ANCHOR = datetime(2026, 1, 15, tzinfo=UTC)
PREPAID_BOUGHT = datetime(2026, 1, 30, 10, 0, tzinfo=UTC)
PERIOD_START = datetime(2026, 4, 15, tzinfo=UTC)
NEXT_PERIOD = datetime(2026, 5, 15, tzinfo=UTC)


@dataclass
class Usage:
    included: Decimal
    prepaid: Decimal
    flex: Decimal


async def _roboflow_workspace(
    runtime: Runtime, make_account: AccountFactory, clock: MovableClock, actor: Actor, *, flex: bool, prepaid: bool
) -> uuid.UUID:
    clock.now = ANCHOR
    account = await make_account(included_credits="150", anchor=ANCHOR, flex_enabled=flex)
    if prepaid:
        clock.now = PREPAID_BOUGHT
        async with runtime.session_factory() as session:
            await service.grant_credits(
                session,
                state=runtime.billing,
                actor=actor,
                account_id=account,
                kind=CreditKind.PREPAID,
                amount=Decimal(20),
                idempotency_key="purchase-jan-30",
                clock=clock,
            )
    clock.now = PERIOD_START
    async with runtime.session_factory() as session:
        await service.roll_over_credits(session, state=runtime.billing, now=clock.now)  # April's included credits
    return account


async def _use_daily(
    runtime: Runtime, clock: MovableClock, account: uuid.UUID, total: int, per_day: int = 10
) -> tuple[Usage, list[datetime]]:
    """Debit ``per_day`` credits each day from April 15th until ``total`` is used; the days refused are returned."""
    usage, refused = Usage(Decimal(0), Decimal(0), Decimal(0)), []
    day = 0
    while day * per_day < total:
        clock.now = PERIOD_START + timedelta(days=day, hours=12)
        assert clock.now < NEXT_PERIOD
        async with runtime.session_factory() as session:
            try:
                result = await service.debit_credits(
                    session,
                    state=runtime.billing,
                    account_id=account,
                    amount=Decimal(per_day),
                    idempotency_key=f"day-{day}",
                    clock=clock,
                )
            except CreditsExhausted:
                refused.append(clock.now)
            else:
                for draw in result.record.draws:
                    if draw.kind == "included":
                        usage.included += draw.amount
                    elif draw.kind == "prepaid":
                        usage.prepaid += draw.amount
                    else:
                        assert draw.kind == "flex"
                        assert draw.grant_id is None
                        usage.flex += draw.amount
                assert result.record.movement.flex == sum(
                    (d.amount for d in result.record.draws if d.kind == "flex"), Decimal(0)
                )
        day += 1
    return usage, refused


async def _invoice_of_may_15(runtime: Runtime, account: uuid.UUID) -> dict[str, Decimal]:
    """What the May 15th invoice bills: the plan in advance, this period's flex credits in arrears."""
    async with runtime.session_factory() as session:
        plan = await session.scalar(
            select(Plan.billing)
            .join(Subscription, Subscription.plan_id == Plan.id)
            .where(Subscription.account_id == account)
        )
        terms = billing_terms(plan)
        flex = await service.flex_used(session, account_id=account, start=PERIOD_START, end=NEXT_PERIOD)
    charges = {"plan": terms.price}
    if flex:
        assert terms.flex_credit_price is not None
        charges["flex"] = flex * terms.flex_credit_price
    return charges


async def _at_reset(runtime: Runtime, clock: MovableClock, account: uuid.UUID) -> service.CreditBalance:
    clock.now = NEXT_PERIOD
    async with runtime.session_factory() as session:
        await service.roll_over_credits(session, state=runtime.billing, now=clock.now)
        return await service.credit_balance(session, account_id=account, clock=clock)


async def _forfeited(runtime: Runtime, account: uuid.UUID) -> Decimal:
    async with runtime.session_factory() as session:
        records, _ = await service.list_movements(session, account_id=account, limit=100, offset=0)
    return -sum((r.movement.amount for r in records if r.movement.kind == "forfeit"), Decimal(0))


@pytest.mark.usefixtures("backend")
async def test_example_1_using_200_credits_burns_150_included_20_prepaid_and_30_flex(
    runtime: Runtime, make_account: AccountFactory, clock: MovableClock, actor: Actor
) -> None:
    account = await _roboflow_workspace(runtime, make_account, clock, actor, flex=True, prepaid=True)
    usage, refused = await _use_daily(runtime, clock, account, 200)
    assert refused == []
    assert usage == Usage(included=Decimal(150), prepaid=Decimal(20), flex=Decimal(30))
    assert await _invoice_of_may_15(runtime, account) == {"plan": Decimal(399), "flex": Decimal(90)}
    after = await _at_reset(runtime, clock, account)
    assert after.by_kind[CreditKind.PREPAID] == 0  # 0 prepaid credits left over
    assert after.by_kind[CreditKind.INCLUDED] == 150  # the new cycle's included credits
    assert await _forfeited(runtime, account) == 0


@pytest.mark.usefixtures("backend")
async def test_example_2_using_120_credits_burns_only_included_and_forfeits_30_at_the_reset(
    runtime: Runtime, make_account: AccountFactory, clock: MovableClock, actor: Actor
) -> None:
    account = await _roboflow_workspace(runtime, make_account, clock, actor, flex=True, prepaid=True)
    usage, refused = await _use_daily(runtime, clock, account, 120)
    assert refused == []
    assert usage == Usage(included=Decimal(120), prepaid=Decimal(0), flex=Decimal(0))
    assert await _invoice_of_may_15(runtime, account) == {"plan": Decimal(399)}
    after = await _at_reset(runtime, clock, account)
    assert after.by_kind[CreditKind.PREPAID] == 20  # 20 prepaid credits left over
    assert await _forfeited(runtime, account) == 30  # the 30 unused included credits do not roll over
    assert after.by_kind[CreditKind.INCLUDED] == 150


@pytest.mark.usefixtures("backend")
async def test_example_3_using_160_credits_burns_150_included_and_10_prepaid(
    runtime: Runtime, make_account: AccountFactory, clock: MovableClock, actor: Actor
) -> None:
    account = await _roboflow_workspace(runtime, make_account, clock, actor, flex=True, prepaid=True)
    usage, refused = await _use_daily(runtime, clock, account, 160)
    assert refused == []
    assert usage == Usage(included=Decimal(150), prepaid=Decimal(10), flex=Decimal(0))
    assert await _invoice_of_may_15(runtime, account) == {"plan": Decimal(399)}
    after = await _at_reset(runtime, clock, account)
    assert after.by_kind[CreditKind.PREPAID] == 10  # still 10 prepaid credits left over
    assert await _forfeited(runtime, account) == 0


@pytest.mark.usefixtures("backend")
async def test_example_4_with_flex_off_10_a_day_stops_after_april_29th_until_the_reset(
    runtime: Runtime, make_account: AccountFactory, clock: MovableClock, actor: Actor
) -> None:
    """The example counts no prepaid credits (it uses 0 and leaves none), so this workspace has none."""
    account = await _roboflow_workspace(runtime, make_account, clock, actor, flex=False, prepaid=False)
    usage, refused = await _use_daily(runtime, clock, account, 300)  # every day of the period
    assert usage == Usage(included=Decimal(150), prepaid=Decimal(0), flex=Decimal(0))
    # 150 included credits by April 29th; from April 30th every run is refused until the reset on May 15th.
    assert refused[0].date() == datetime(2026, 4, 30).date()
    assert [d.date() for d in refused] == [(PERIOD_START + timedelta(days=15 + i)).date() for i in range(15)]
    assert await _invoice_of_may_15(runtime, account) == {"plan": Decimal(399)}
    clock.now = NEXT_PERIOD  # no rollover run yet: the first debit of the new cycle sees its included credits
    async with runtime.session_factory() as session:
        result = await service.debit_credits(
            session,
            state=runtime.billing,
            account_id=account,
            amount=Decimal(10),
            idempotency_key="may-15",
            clock=clock,
        )
    assert [(d.kind, d.amount) for d in result.record.draws] == [("included", Decimal(10))]
