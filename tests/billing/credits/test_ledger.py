"""The ledger's rules, on SQLite and PostgreSQL: exact amounts, idempotent writes, refusals that write nothing,
expiry and forfeits, and balances that the movements and draws re-derive."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from license_server.auth.models import AuditEvent
from license_server.auth.tokens import Actor, Role
from license_server.billing.credits import service
from license_server.billing.credits.burndown import CreditKind
from license_server.billing.credits.models import CreditDraw, CreditGrant, CreditMovement
from license_server.errors import CreditsExhausted, IdempotencyConflict, ValidationFailed
from license_server.runtime import Runtime
from tests.billing.credits.conftest import AccountFactory
from tests.conftest import MovableClock

pytestmark = pytest.mark.usefixtures("backend")


async def _grant(
    runtime: Runtime,
    actor: Actor,
    account: uuid.UUID,
    amount: str,
    *,
    kind: CreditKind = CreditKind.PREPAID,
    key: str | None = None,
    clock: MovableClock,
    **extra: object,
) -> service.WriteResult:
    async with runtime.session_factory() as session:
        return await service.grant_credits(
            session,
            state=runtime.billing,
            actor=actor,
            account_id=account,
            kind=kind,
            amount=Decimal(amount),
            idempotency_key=key or uuid.uuid4().hex,
            clock=clock,
            **extra,  # type: ignore[arg-type]
        )


async def _debit(
    runtime: Runtime, account: uuid.UUID, amount: str, *, key: str | None = None, clock: MovableClock, **extra: object
) -> service.WriteResult:
    async with runtime.session_factory() as session:
        return await service.debit_credits(
            session,
            state=runtime.billing,
            account_id=account,
            amount=Decimal(amount),
            idempotency_key=key or uuid.uuid4().hex,
            clock=clock,
            **extra,  # type: ignore[arg-type]
        )


async def _balance(runtime: Runtime, account: uuid.UUID, clock: MovableClock) -> service.CreditBalance:
    async with runtime.session_factory() as session:
        return await service.credit_balance(session, account_id=account, clock=clock)


async def _counts(runtime: Runtime) -> tuple[int, int, int, int]:
    async with runtime.session_factory() as session:
        return (
            int(await session.scalar(select(func.count()).select_from(CreditMovement)) or 0),
            int(await session.scalar(select(func.count()).select_from(CreditDraw)) or 0),
            int(await session.scalar(select(func.count()).select_from(CreditGrant)) or 0),
            int(await session.scalar(select(func.count()).select_from(AuditEvent)) or 0),
        )


async def test_amounts_are_exact_in_storage_and_arithmetic(
    runtime: Runtime, make_account: AccountFactory, clock: MovableClock, actor: Actor
) -> None:
    """0.1 + 0.2 is 0.3, and the largest amount keeps its last millionth (floats keep neither)."""
    account = await make_account()
    for amount in ["0.1", "0.2", "999999999.999999"]:
        await _grant(runtime, actor, account, amount, clock=clock)
    assert (await _balance(runtime, account, clock)).available == Decimal("1000000000.299999")
    await _debit(runtime, account, "0.3", clock=clock)
    await _debit(runtime, account, "999999999.999998", clock=clock)
    balance = await _balance(runtime, account, clock)
    assert balance.available == Decimal("0.000001")
    async with runtime.session_factory() as session:
        remaining = list(await session.scalars(select(CreditGrant.remaining).order_by(CreditGrant.id)))
        total = await session.scalar(select(func.sum(CreditMovement.amount)))
    assert remaining == [Decimal(0), Decimal(0), Decimal("0.000001")]
    assert total == Decimal("0.000001")  # SUM in SQL is exact too
    if runtime.settings.is_sqlite:  # stored as an integer count of millionths, not as a binary float
        with sqlite3.connect(runtime.settings.data_dir / "license-server.db") as raw:
            stored = raw.execute("SELECT amount, typeof(amount) FROM credit_grants ORDER BY id").fetchall()
        assert stored == [(100000, "integer"), (200000, "integer"), (999999999999999, "integer")]


async def test_more_decimal_places_than_the_ledger_keeps_are_refused_not_rounded(
    runtime: Runtime, make_account: AccountFactory, clock: MovableClock
) -> None:
    account = await make_account()
    with pytest.raises(ValidationFailed, match="at most 6 decimal places"):
        await _debit(runtime, account, "0.0000001", clock=clock)
    with pytest.raises(ValidationFailed, match="at most 6 decimal places"):
        await _grant(runtime, Actor("t", Role.OWNER), account, "1.0000001", clock=clock)
    with pytest.raises(ValidationFailed, match="below 1000000000"):
        await _debit(runtime, account, "1000000000", clock=clock)
    assert await _counts(runtime) == (0, 0, 0, 0)


async def test_a_debit_records_the_grants_it_drew_from_in_burn_down_order(
    runtime: Runtime, make_account: AccountFactory, clock: MovableClock, actor: Actor
) -> None:
    account = await make_account(flex_enabled=True)
    prepaid = await _grant(runtime, actor, account, "5", clock=clock)
    promo = await _grant(
        runtime, actor, account, "3", kind=CreditKind.PROMOTIONAL, expires_at=clock.now + timedelta(days=9), clock=clock
    )
    included = await _grant(runtime, actor, account, "2", kind=CreditKind.INCLUDED, clock=clock)
    result = await _debit(runtime, account, "12.5", clock=clock, description="training run", metadata={"app": "a1"})
    assert [(d.grant_id, d.kind, d.amount) for d in result.record.draws] == [
        (included.record.grant.id if included.record.grant else None, "included", Decimal(2)),
        (promo.record.grant.id if promo.record.grant else None, "promotional", Decimal(3)),
        (prepaid.record.grant.id if prepaid.record.grant else None, "prepaid", Decimal(5)),
        (None, "flex", Decimal("2.5")),
    ]
    movement = result.record.movement
    assert (movement.amount, movement.flex, movement.extra_metadata) == (
        Decimal("-12.5"),
        Decimal("2.5"),
        {"app": "a1"},
    )
    balance = await _balance(runtime, account, clock)
    assert (balance.available, balance.flex_used, balance.balance) == (Decimal(0), Decimal("2.5"), Decimal("-2.5"))


async def test_with_flex_off_a_debit_past_zero_is_refused_and_changes_nothing(
    runtime: Runtime, make_account: AccountFactory, clock: MovableClock, actor: Actor
) -> None:
    account = await make_account(flex_enabled=False)
    await _grant(runtime, actor, account, "10", clock=clock)
    await _debit(runtime, account, "4", clock=clock)
    before = await _counts(runtime), await _balance(runtime, account, clock)
    with pytest.raises(CreditsExhausted) as refused:
        await _debit(runtime, account, "6.000001", key="too-much", clock=clock)
    assert refused.value.code == "credits_exhausted"
    assert refused.value.status_code == 402
    assert "6 credits are available" in refused.value.detail
    assert (await _counts(runtime), await _balance(runtime, account, clock)) == before
    await _debit(
        runtime, account, "6", key="too-much", clock=clock
    )  # nothing was kept of the refusal, not even its key
    assert (await _balance(runtime, account, clock)).available == 0


async def test_a_replay_answers_the_first_result_and_a_different_request_under_the_key_is_refused(
    runtime: Runtime, make_account: AccountFactory, clock: MovableClock, actor: Actor
) -> None:
    account = await make_account()
    granted = await _grant(runtime, actor, account, "10", key="g-1", clock=clock)
    again = await _grant(runtime, actor, account, "10", key="g-1", clock=clock)
    assert (again.replayed, again.record.movement.id) == (True, granted.record.movement.id)
    first = await _debit(runtime, account, "1.50", key="d-1", clock=clock)
    clock.advance(timedelta(minutes=5))
    replay = await _debit(runtime, account, "1.5", key="d-1", clock=clock)  # the same amount, written differently
    assert not first.replayed
    assert replay.replayed
    assert replay.record.movement.id == first.record.movement.id
    assert [(d.grant_id, d.amount) for d in replay.record.draws] == [(d.grant_id, d.amount) for d in first.record.draws]
    counts = await _counts(runtime)
    with pytest.raises(IdempotencyConflict) as conflict:
        await _debit(runtime, account, "2", key="d-1", clock=clock)
    assert (conflict.value.code, conflict.value.status_code, conflict.value.field) == (
        "idempotency_key_reused",
        409,
        "idempotency_key",
    )
    with pytest.raises(IdempotencyConflict):
        await _grant(runtime, actor, account, "11", key="g-1", clock=clock)
    assert await _counts(runtime) == counts
    assert (await _balance(runtime, account, clock)).available == Decimal("8.5")


async def test_keys_are_per_account(
    runtime: Runtime, make_account: AccountFactory, clock: MovableClock, actor: Actor
) -> None:
    """...and one namespace per account's ledger: a grant's key cannot be reused for a debit."""
    one, two = await make_account(), await make_account()
    for account in (one, two):
        await _grant(runtime, actor, account, "3", key="grant", clock=clock)
        assert not (await _debit(runtime, account, "1", key="same", clock=clock)).replayed
    with pytest.raises(IdempotencyConflict):
        await _debit(runtime, one, "1", key="grant", clock=clock)


async def test_grant_rules_for_each_kind(
    runtime: Runtime, make_account: AccountFactory, clock: MovableClock, actor: Actor
) -> None:
    account = await make_account()
    with pytest.raises(ValidationFailed, match="promotional credits need an expiry date"):
        await _grant(runtime, actor, account, "1", kind=CreditKind.PROMOTIONAL, clock=clock)
    with pytest.raises(ValidationFailed, match="prepaid credits never expire"):
        await _grant(runtime, actor, account, "1", expires_at=clock.now + timedelta(days=1), clock=clock)
    with pytest.raises(ValidationFailed, match="in the future"):
        await _grant(runtime, actor, account, "1", kind=CreditKind.PROMOTIONAL, expires_at=clock.now, clock=clock)
    with pytest.raises(ValidationFailed, match="greater than 0"):
        await _grant(runtime, actor, account, "-1", clock=clock)
    assert await _counts(runtime) == (0, 0, 0, 0)
    included = await _grant(runtime, actor, account, "1", kind=CreditKind.INCLUDED, clock=clock)
    assert included.record.grant is not None
    # Without a subscription the period is the calendar month (UTC): included credits expire at its end.
    assert included.record.grant.expires_at == clock.now.replace(month=clock.now.month + 1, day=1, hour=0)


async def test_staff_grants_are_audited_in_their_transaction(
    runtime: Runtime, make_account: AccountFactory, clock: MovableClock, actor: Actor
) -> None:
    account = await make_account()
    result = await _grant(runtime, actor, account, "7.25", key="g", clock=clock)
    await _grant(runtime, actor, account, "7.25", key="g", clock=clock)  # a replay is not a second action
    async with runtime.session_factory() as session:
        events = list(await session.scalars(select(AuditEvent)))
    assert [(e.action, e.actor, e.target_id, e.detail["amount"]) for e in events] == [
        ("billing.credits.grant", actor.name, str(account), "7.25")
    ]
    assert result.record.movement.actor == actor.name


async def test_expired_grants_are_not_spent_and_the_rollover_forfeits_them_once(
    runtime: Runtime, make_account: AccountFactory, clock: MovableClock, actor: Actor
) -> None:
    account = await make_account(flex_enabled=False)
    expiry = clock.now + timedelta(days=2)
    await _grant(runtime, actor, account, "4", kind=CreditKind.PROMOTIONAL, expires_at=expiry, clock=clock)
    await _grant(runtime, actor, account, "1", clock=clock)
    await _debit(runtime, account, "1", clock=clock)  # from the promotional grant
    clock.now = expiry
    assert (await _balance(runtime, account, clock)).available == 1  # before any rollover: derived, not stored
    with pytest.raises(CreditsExhausted):
        await _debit(runtime, account, "2", clock=clock)
    async with runtime.session_factory() as session:
        first = await service.roll_over_credits(session, state=runtime.billing, now=clock.now)
        second = await service.roll_over_credits(session, state=runtime.billing, now=clock.now)
        records, _ = await service.list_movements(session, account_id=account, limit=10, offset=0)
    assert (first.forfeited, second.forfeited) == (1, 0)
    forfeit = records[0].movement
    assert (forfeit.kind, forfeit.amount, forfeit.occurred_at) == ("forfeit", Decimal(-3), expiry)


async def test_the_rollover_grants_each_cycle_once_and_forfeits_the_last(
    runtime: Runtime, make_account: AccountFactory, clock: MovableClock
) -> None:
    """Jan 31 anchor: cycles clamp to Feb 28 and come back to Mar 31."""
    anchor = clock.now.replace(year=2027, month=1, day=31, hour=9)
    clock.now = anchor
    account = await make_account(included_credits="100.5", anchor=anchor)
    starts = []
    for moment in [
        anchor,
        anchor + timedelta(days=1),
        anchor.replace(month=2, day=28),
        anchor.replace(month=3, day=31),
    ]:
        clock.now = moment
        async with runtime.session_factory() as session:
            await service.roll_over_credits(session, state=runtime.billing, now=moment)
            await service.roll_over_credits(session, state=runtime.billing, now=moment)
            starts = list(await session.scalars(select(CreditGrant.cycle_start).order_by(CreditGrant.id)))
    assert [s.date().isoformat() for s in starts if s is not None] == ["2027-01-31", "2027-02-28", "2027-03-31"]
    async with runtime.session_factory() as session:
        records, total = await service.list_movements(session, account_id=account, limit=10, offset=0)
    assert total == 5  # three grants, two forfeits
    assert [(r.movement.kind, r.movement.amount) for r in reversed(records)] == [
        ("grant", Decimal("100.5")),
        ("forfeit", Decimal("-100.5")),
        ("grant", Decimal("100.5")),
        ("forfeit", Decimal("-100.5")),
        ("grant", Decimal("100.5")),
    ]
    assert (await _balance(runtime, account, clock)).by_kind[CreditKind.INCLUDED] == Decimal("100.5")


async def test_the_materialised_remaining_is_what_the_movements_and_draws_say(
    runtime: Runtime, make_account: AccountFactory, clock: MovableClock, actor: Actor
) -> None:
    """The ledger is the truth: every grant's amount minus its draws and forfeit is its stored remainder, and the sum
    of movements is what grants hold minus the flex drawn."""
    account = await make_account(included_credits="50", flex_enabled=True)
    await _grant(runtime, actor, account, "7.5", clock=clock)
    await _grant(
        runtime, actor, account, "2", kind=CreditKind.PROMOTIONAL, expires_at=clock.now + timedelta(days=1), clock=clock
    )
    for amount in ["3.25", "20", "0.000001", "40", "1"]:
        await _debit(runtime, account, amount, clock=clock)
    clock.advance(timedelta(days=40))
    async with runtime.session_factory() as session:
        await service.roll_over_credits(session, state=runtime.billing, now=clock.now)
    await _debit(runtime, account, "5", clock=clock)
    async with runtime.session_factory() as session:
        grants = list(await session.scalars(select(CreditGrant)))
        draws = list(await session.scalars(select(CreditDraw)))
        movements = list(await session.scalars(select(CreditMovement)))
    for grant in grants:
        drawn = sum((d.amount for d in draws if d.grant_id == grant.id), Decimal(0))
        forfeited = -sum((m.amount for m in movements if m.kind == "forfeit" and m.grant_id == grant.id), Decimal(0))
        assert grant.remaining == grant.amount - drawn - forfeited
    flex = sum((m.flex for m in movements), Decimal(0))
    assert sum((m.amount for m in movements), Decimal(0)) == sum((g.remaining for g in grants), Decimal(0)) - flex
    assert flex == sum((d.amount for d in draws if d.kind == "flex"), Decimal(0)) > 0


async def test_a_yearly_plan_grants_its_included_credits_once_a_year(
    runtime: Runtime, make_account: AccountFactory, clock: MovableClock
) -> None:
    """Seed 003: included credits reset monthly or annually, with the billing cycle (flex is still billed monthly)."""
    anchor = clock.now.replace(year=2028, month=2, day=29)  # a leap day: the next cycle starts on Feb 28, 2029
    account = await make_account(included_credits="360", anchor=anchor, interval="year")
    for moment in [anchor, anchor + timedelta(days=40), anchor.replace(year=2029, day=28)]:
        clock.now = moment
        async with runtime.session_factory() as session:
            await service.roll_over_credits(session, state=runtime.billing, now=moment)
    async with runtime.session_factory() as session:
        grants = list(await session.scalars(select(CreditGrant).order_by(CreditGrant.id)))
        balance = await service.credit_balance(session, account_id=account, clock=clock)
    assert [(g.cycle_start, g.expires_at) for g in grants] == [
        (anchor, anchor.replace(year=2029, day=28)),
        (anchor.replace(year=2029, day=28), anchor.replace(year=2030, day=28)),
    ]
    assert (grants[0].remaining, balance.by_kind[CreditKind.INCLUDED]) == (Decimal(0), Decimal(360))
    assert balance.period.end == anchor.replace(year=2029, month=3, day=29)  # the monthly period, for flex
