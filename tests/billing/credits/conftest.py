"""Billing accounts for the credits tests, written as plain rows so the tests depend only on the schema."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal

import pytest

from license_server.billing.accounts.models import BillingAccount, BillingPlatform, Subscription, SubscriptionStatus
from license_server.licenses.models import Plan
from license_server.runtime import Runtime

AccountFactory = Callable[..., Awaitable[uuid.UUID]]


@pytest.fixture
def make_account(runtime: Runtime) -> AccountFactory:
    """A billing account; with ``included_credits`` (and ``anchor``) it has an active subscription on a plan that
    includes that many credits per cycle (seed 003's Growth Monthly: 150 credits, $399, $3 a flex credit)."""

    async def make(
        *,
        included_credits: str | None = None,
        anchor: datetime | None = None,
        flex_enabled: bool = False,
        external_id: str | None = None,
        interval: str = "month",
    ) -> uuid.UUID:
        now = runtime.clock()
        async with runtime.session_factory() as session:
            platform = BillingPlatform(
                name="Roboflow", billing_enabled=True, restrictive_defaults={}, created_by="test"
            )
            session.add(platform)
            await session.flush()
            account = BillingAccount(
                platform_id=platform.id,
                external_id=external_id or f"ws-{uuid.uuid4().hex[:8]}",
                flex_enabled=flex_enabled,
                created_at=now,
            )
            session.add(account)
            await session.flush()
            if included_credits is not None:
                plan = Plan(
                    code=f"growth-{uuid.uuid4().hex[:6]}",
                    name="Growth Monthly",
                    terms={},
                    billing={
                        "price": "399",
                        "interval": interval,
                        "included_credits": included_credits,
                        "flex_credit_price": "3",
                    },
                )
                session.add(plan)
                await session.flush()
                session.add(
                    Subscription(
                        account_id=account.id,
                        plan_id=plan.id,
                        status=SubscriptionStatus.ACTIVE.value,
                        anchor_at=anchor or now,
                        trial_ends_at=None,
                        canceled_at=None,
                        created_at=now,
                        updated_at=now,
                    )
                )
            await session.commit()
            return account.id

    return make


def credits(value: str | int) -> Decimal:
    return Decimal(value)
