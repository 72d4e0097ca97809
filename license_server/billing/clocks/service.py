"""Test clocks, and the one place billing reads the time of an account.

Every date computation for a billing account goes through ``billing_now`` (a cached snapshot at hand: the usage hot
path) or ``account_clock`` (a session at hand: staff actions, credits, subscriptions): an account attached to a test
clock reads the clock's frozen instant; any other account reads the process clock. Jobs that real time runs skip
the attached accounts (``clocked_account_ids``); advancing a clock runs them for its accounts at the clock's time
(``billing/clocks/jobs.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.audit import record_audit
from license_server.auth.tokens import Actor
from license_server.billing.accounts.models import BillingAccount
from license_server.billing.accounts.snapshots import AccountSnapshot
from license_server.billing.clocks.models import TestClock, TestClockAccount
from license_server.billing.state import BillingState
from license_server.clock import Clock, as_utc, utcnow
from license_server.errors import BillingAccountNotFound, TestClockNotFound, ValidationFailed


def billing_now(state: BillingState, snapshot: AccountSnapshot) -> datetime:
    """The account's now on the hot path: its test clock's frozen instant (carried by the snapshot), else real time."""
    return snapshot.test_now if snapshot.test_now is not None else state.clock()


async def frozen_now_of(session: AsyncSession, account_id: uuid.UUID) -> datetime | None:
    frozen = await session.scalar(
        select(TestClock.frozen_now)
        .join(TestClockAccount, TestClockAccount.clock_id == TestClock.id)
        .where(TestClockAccount.account_id == account_id)
    )
    return as_utc(frozen) if frozen is not None else None


async def account_clock(session: AsyncSession, account_id: uuid.UUID, real: Clock = utcnow) -> Clock:
    """The clock an account's dates are computed with: its test clock's frozen instant, or ``real``."""
    frozen = await frozen_now_of(session, account_id)
    if frozen is None:
        return real
    return lambda: frozen


def clocked_account_ids() -> Any:
    """The accounts on a test clock, as a subquery: the jobs real time runs leave them out."""
    return select(TestClockAccount.account_id)


async def attach_account(
    session: AsyncSession, *, account_id: uuid.UUID, clock_id: uuid.UUID, now: datetime, field: str = "test_clock_id"
) -> None:
    """Attach one account in the caller's transaction (no commit): a no-op if it is on this clock already; refused
    (``account_on_other_clock``) if it follows another, since two clocks cannot both be its time."""
    await get_clock(session, clock_id)
    attached = await session.get(TestClockAccount, account_id)
    if attached is not None and attached.clock_id != clock_id:
        raise ValidationFailed("the account follows another test clock", field=field, code="account_on_other_clock")
    if attached is None:
        session.add(TestClockAccount(account_id=account_id, clock_id=clock_id, attached_at=now))
        await session.flush()


# -- staff ----------------------------------------------------------------------------------------------------------
async def create_clock(
    session: AsyncSession, *, actor: Actor, name: str, frozen_now: datetime | None = None, clock: Clock = utcnow
) -> TestClock:
    now = clock()
    row = TestClock(
        id=uuid.uuid4(),
        name=name,
        frozen_now=as_utc(frozen_now) if frozen_now is not None else now,
        created_at=now,
        created_by=actor.name,
        updated_at=now,
    )
    session.add(row)
    await session.flush()
    await record_audit(
        session,
        actor=actor,
        action="billing.test_clock_created",
        target_type="billing_test_clock",
        target_id=row.id,
        detail={"name": name, "frozen_now": row.frozen_now.isoformat()},
        clock=clock,
    )
    await session.commit()
    return row


async def get_clock(session: AsyncSession, clock_id: uuid.UUID) -> TestClock:
    row = await session.get(TestClock, clock_id)
    if row is None:
        raise TestClockNotFound(f"no test clock {clock_id}", field="clock_id")
    return row


async def list_clocks(session: AsyncSession) -> list[TestClock]:
    return list((await session.scalars(select(TestClock).order_by(TestClock.created_at, TestClock.id))).all())


async def clock_accounts(session: AsyncSession, clock_id: uuid.UUID) -> list[BillingAccount]:
    rows = await session.scalars(
        select(BillingAccount)
        .join(TestClockAccount, TestClockAccount.account_id == BillingAccount.id)
        .where(TestClockAccount.clock_id == clock_id)
        .order_by(BillingAccount.created_at, BillingAccount.id)
    )
    return list(rows.all())


async def attach_accounts(
    session: AsyncSession,
    *,
    actor: Actor,
    clock_id: uuid.UUID,
    platform_id: uuid.UUID,
    external_ids: Sequence[str],
    clock: Clock = utcnow,
) -> list[BillingAccount]:
    """Attach accounts (one or a group) to the clock. Idempotent: an account already on this clock stays; one on
    another clock is refused (``account_on_other_clock``), since two clocks cannot both be its time."""
    test_clock = await get_clock(session, clock_id)
    if not external_ids:
        raise ValidationFailed("name at least one account", field="external_ids")
    accounts = []
    for index, external_id in enumerate(external_ids):
        account = await session.scalar(
            select(BillingAccount).where(
                BillingAccount.platform_id == platform_id, BillingAccount.external_id == external_id
            )
        )
        if account is None:
            raise BillingAccountNotFound(f"platform {platform_id} has no account {external_id!r}", field="external_ids")
        await attach_account(
            session, account_id=account.id, clock_id=clock_id, now=clock(), field=f"external_ids.{index}"
        )
        accounts.append(account)
    await record_audit(
        session,
        actor=actor,
        action="billing.test_clock_attached",
        target_type="billing_test_clock",
        target_id=test_clock.id,
        detail={"platform_id": str(platform_id), "external_ids": list(external_ids)},
        clock=clock,
    )
    await session.commit()
    return accounts
