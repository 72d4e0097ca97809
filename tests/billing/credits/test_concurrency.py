"""500 concurrent debits of random exact amounts, from two runtimes (two connection pools, two write gates) on one
database: with flex off no balance goes below zero and the accepted total is exactly the balance change; with flex
on the flex drawn is exactly the overflow. SQLite serialises on BEGIN IMMEDIATE, PostgreSQL on the account row lock."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from license_server.auth.tokens import Actor
from license_server.billing.credits import service
from license_server.billing.credits.burndown import CreditKind
from license_server.config import Settings
from license_server.db.session import create_engine, create_session_factory
from license_server.errors import CreditsExhausted
from license_server.runtime import Runtime
from license_server.signing.keys import KeyStore
from license_server.signing.service import Signer
from tests.billing.credits.conftest import AccountFactory
from tests.conftest import PASSPHRASE, MovableClock

DEBITS = 500
pytestmark = pytest.mark.usefixtures("backend")


@pytest.fixture
async def second_runtime(settings: Settings, clock: MovableClock) -> AsyncIterator[Runtime]:
    """Another server process's view of the same database: its own engine, pool and write gate."""
    engine = create_engine(settings)
    other = Runtime(
        settings=settings,
        signer=Signer(KeyStore(settings.keys_dir, PASSPHRASE), refresh_seconds=0),
        engine=engine,
        session_factory=create_session_factory(engine),
        clock=clock,
    )
    try:
        yield other
    finally:
        await other.close()


def _random_amounts(seed: int) -> list[Decimal]:
    rng = random.Random(seed)  # noqa: S311 - reproducible test amounts, not secrets
    return [Decimal(rng.randint(1, 5_000_000)).scaleb(-6) for _ in range(DEBITS)]  # 0.000001 .. 5.000000


async def _debit_all(
    runtimes: list[Runtime], account: uuid.UUID, amounts: list[Decimal], clock: MovableClock
) -> list[Decimal | None]:
    """Every debit at once, alternating between the runtimes; each answer is the amount accepted or None."""

    async def one(index: int, amount: Decimal) -> Decimal | None:
        runtime = runtimes[index % len(runtimes)]
        async with runtime.session_factory() as session:
            try:
                result = await service.debit_credits(
                    session,
                    state=runtime.billing,
                    account_id=account,
                    amount=amount,
                    idempotency_key=f"d-{index}",
                    clock=clock,
                )
            except CreditsExhausted:
                return None
        assert result.record.movement.amount == -amount
        return amount

    return list(await asyncio.gather(*(one(i, a) for i, a in enumerate(amounts))))


async def _grant(runtime: Runtime, actor: Actor, account: uuid.UUID, amount: Decimal, clock: MovableClock) -> None:
    async with runtime.session_factory() as session:
        await service.grant_credits(
            session,
            state=runtime.billing,
            actor=actor,
            account_id=account,
            kind=CreditKind.PREPAID,
            amount=amount,
            idempotency_key="seed",
            clock=clock,
        )


async def test_concurrent_debits_with_flex_off_never_go_below_zero_and_add_up_exactly(
    runtime: Runtime, second_runtime: Runtime, make_account: AccountFactory, clock: MovableClock, actor: Actor
) -> None:
    account = await make_account(flex_enabled=False)
    amounts = _random_amounts(seed=3)
    initial = (sum(amounts, Decimal(0)) * Decimal("0.6")).quantize(Decimal("0.000001"))  # ~60 % can be accepted
    await _grant(runtime, actor, account, initial, clock)
    answers = await _debit_all([runtime, second_runtime], account, amounts, clock)
    async with runtime.session_factory() as session:
        balance = await service.credit_balance(session, account_id=account, clock=clock)
        records, total = await service.list_movements(session, account_id=account, limit=DEBITS + 1, offset=0)
    accepted = [a for a in answers if a is not None]
    refused = [amount for amount, answer in zip(amounts, answers, strict=True) if answer is None]
    assert accepted
    assert refused
    assert balance.available >= 0
    assert balance.flex_used == 0
    assert sum(accepted, Decimal(0)) == initial - balance.available  # exactly, to the millionth
    assert total == 1 + len(accepted)
    # A refusal saw less than its amount left, and what is left only shrinks: every refused amount exceeds the end.
    assert min(refused) > balance.available
    assert all(r.movement.flex == 0 for r in records)


async def test_concurrent_debits_with_flex_on_draw_exactly_the_overflow_as_flex(
    runtime: Runtime, second_runtime: Runtime, make_account: AccountFactory, clock: MovableClock, actor: Actor
) -> None:
    account = await make_account(flex_enabled=True)
    amounts = _random_amounts(seed=4)
    requested = sum(amounts, Decimal(0))
    initial = (requested * Decimal("0.6")).quantize(Decimal("0.000001"))
    await _grant(runtime, actor, account, initial, clock)
    answers = await _debit_all([runtime, second_runtime], account, amounts, clock)
    async with runtime.session_factory() as session:
        balance = await service.credit_balance(session, account_id=account, clock=clock)
    assert None not in answers
    assert balance.available == 0
    assert balance.flex_used == requested - initial  # exactly the overflow
    assert balance.balance == initial - requested
