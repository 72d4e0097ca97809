"""The rollover computes each subscription's cycle in SQL; it must be the cycle ``credit_cycle`` computes in Python
(``periods.add_months``: month-end anchors clamp and come back, leap days, times of day to the microsecond)."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from license_server.billing.accounts.models import BillingAccount, BillingPlatform, Subscription
from license_server.billing.credits import service
from license_server.billing.credits.models import CreditGrant
from license_server.licenses.models import Plan
from license_server.runtime import Runtime

pytestmark = pytest.mark.usefixtures("backend")
NOWS = [
    datetime(2027, 2, 28, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2028, 2, 29, 0, 0, tzinfo=UTC),
    datetime(2028, 3, 31, 12, 30, 0, 250000, tzinfo=UTC),
    datetime(2026, 12, 31, 23, 0, tzinfo=UTC),
]


def _anchors(now: datetime, count: int, seed: int) -> list[datetime]:
    rng = random.Random(seed)  # noqa: S311 - reproducible test data
    anchors = [now, now - timedelta(microseconds=1)]
    for _ in range(count):
        back = rng.choice([rng.randint(0, 40), rng.randint(0, 800), rng.randint(0, 4000)])
        day = now - timedelta(days=back)
        if rng.random() < 0.5:  # month ends and leap days, where clamping happens
            for candidate in (31, 30, 29, 28):
                try:
                    day = day.replace(day=candidate)
                    break
                except ValueError:
                    continue
        moment = day.replace(
            hour=rng.randint(0, 23),
            minute=rng.randint(0, 59),
            second=rng.randint(0, 59),
            microsecond=rng.randint(0, 999999),
        )
        if moment <= now:
            anchors.append(moment)
    return anchors


@pytest.mark.parametrize("interval", ["month", "year"])
async def test_sql_cycles_are_the_python_cycles(runtime: Runtime, interval: str) -> None:
    for round_, now in enumerate(NOWS):
        anchors = _anchors(now, 60, seed=round_)
        async with runtime.session_factory() as session:
            platform = BillingPlatform(name="p", billing_enabled=True, restrictive_defaults={}, created_by="t")
            plan = Plan(
                code=f"p-{uuid.uuid4().hex[:8]}",
                name="p",
                terms={},
                billing={"included_credits": "1", "interval": interval},
            )
            session.add_all([platform, plan])
            await session.flush()
            expected = {}
            for anchor in anchors:
                account = BillingAccount(
                    platform_id=platform.id, external_id=uuid.uuid4().hex, flex_enabled=False, created_at=now
                )
                session.add(account)
                await session.flush()
                subscription = Subscription(
                    account_id=account.id,
                    plan_id=plan.id,
                    status="active",
                    anchor_at=anchor,
                    trial_ends_at=None,
                    canceled_at=None,
                    created_at=anchor,
                    updated_at=anchor,
                )
                session.add(subscription)
                await session.flush()
                cycle = service.credit_cycle(now, anchor, interval)
                expected[subscription.id] = (cycle.start, cycle.end)
            await session.commit()
            granted = await service.grant_cycle_credits(session, now=now)
            await session.commit()
            rows = await session.execute(
                select(CreditGrant.subscription_id, CreditGrant.cycle_start, CreditGrant.expires_at).where(
                    CreditGrant.subscription_id.in_(expected)
                )
            )
            got = {subscription_id: (start, end) for subscription_id, start, end in rows}
        assert granted >= len(expected) == len(got)  # earlier rounds' subscriptions may start new cycles too
        mismatches = {k: (expected[k], got.get(k)) for k in expected if got.get(k) != expected[k]}
        assert not mismatches, f"now={now}: {list(mismatches.values())[:5]}"
        assert all(start is not None and end is not None and start <= now < end for start, end in got.values())
