"""Test clocks: an advance stops at every boundary (three months renew three times), every date of a clocked
account follows the clock (periods, trial, credits' expiry), and real time's jobs leave clocked accounts alone."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select

from license_server.billing.accounts.models import Subscription
from license_server.billing.credits.models import CreditGrant, CreditMovement
from license_server.billing.subscriptions.jobs import run_subscription_renewals
from license_server.billing.subscriptions.service import renew_due_subscriptions
from license_server.clock import as_utc
from tests.billing.subscriptions.conftest import CLOCKS, RUNS, T0, Clocked
from tests.conftest import MovableClock

DAY = timedelta(days=1)


def moments(values: list[str]) -> list[datetime]:
    return [as_utc(datetime.fromisoformat(v)) for v in values]


async def test_a_three_month_advance_renews_three_times_each_at_its_period_end(clocked: Clocked) -> None:
    # A plan at no charge: its invoices are issued paid (a paid plan's unpaid first invoice would make it past due,
    # and a past-due account gets no included credits: test_lifecycle drives payments).
    sid = (await clocked.subscribe("pro-comp"))["id"]
    moved = await clocked.advance(months=3)
    feb10, mar10, apr10 = (datetime(2027, m, 10, tzinfo=UTC) for m in (2, 3, 4))
    # the trial's notice (Jan 21) and end (Jan 24), then each period end
    assert moments(moved["steps"]) == [T0 + 11 * DAY, T0 + 14 * DAY, feb10, mar10, apr10]
    assert await clocked.events(sid) == ["trial_will_end", "trial_ended", "renewed", "renewed", "renewed"]
    detail = await clocked.subscription(sid)
    assert moments([detail["current_period_start"], detail["current_period_end"]]) == [
        apr10,
        datetime(2027, 5, 10, tzinfo=UTC),
    ]
    # included credits followed the clock: one grant per cycle, each forfeited at its cycle's end
    async with clocked.runtime.session_factory() as db:
        grants = (await db.scalars(select(CreditGrant).order_by(CreditGrant.id))).all()
        forfeits = (await db.scalars(select(CreditMovement).where(CreditMovement.kind == "forfeit"))).all()
    assert [as_utc(g.expires_at) for g in grants if g.expires_at] == [
        feb10,
        mar10,
        apr10,
        datetime(2027, 5, 10, tzinfo=UTC),
    ]
    assert [g.remaining for g in grants] == [Decimal(0)] * 3 + [Decimal(100)]
    assert [as_utc(f.occurred_at) for f in forfeits] == [feb10, mar10, apr10]
    balance = (await clocked.platform_call("GET", "credits/")).json()["data"]
    assert Decimal(balance["available"]) == 100
    # the usage period is the clock's: April 10 - May 10
    report = await clocked.report()
    assert moments([report["period_start"], report["period_end"]]) == [apr10, datetime(2027, 5, 10, tzinfo=UTC)]
    # ... and each period's invoice was issued on the clock, as it passed
    invoices = (await clocked.platform_call("GET", "invoices")).json()["data"]["invoices"]
    assert sorted(moments([i["period_start"] for i in invoices])) == [T0, feb10, mar10, apr10]
    assert {i["status"] for i in invoices} == {"paid"}


async def test_reservations_made_on_the_clock_expire_on_the_clock(clocked: Clocked) -> None:
    await clocked.subscribe("pro")
    held = await clocked.platform_call(
        "POST", "usage/reserve", {"key": RUNS, "amount": 4, "request_id": "job-1", "ttl_seconds": 3600}
    )
    assert as_utc(datetime.fromisoformat(held.json()["data"]["expires_at"])) == T0 + timedelta(hours=1)
    moved = await clocked.advance(days=1)
    assert moments(moved["steps"])[0] == T0 + timedelta(hours=1)  # the advance stopped where the hold expired
    entry = await clocked.entry(RUNS)
    assert entry.get("held", 0) == 0


async def test_real_time_jobs_leave_clocked_accounts_alone(clocked: Clocked, clock: MovableClock) -> None:
    clocked_sid = (await clocked.subscribe("pro"))["id"]
    real_sid = (await clocked.subscribe("pro", external_id="org-2"))["id"]  # real time: 2026-06-01
    clock.now = datetime(2027, 6, 1, tzinfo=UTC)  # real time passes far beyond both subscriptions' boundaries
    result = await run_subscription_renewals(clocked.runtime)
    # org-2 started 2026-06-01 12:00: its terms ended on the 1st at noon of each month July 2026 .. May 2027
    assert result is not None
    assert result.renewed == 11
    # caught up in the order things happened; a trial notice whose moment passed unseen is not sent late
    assert await clocked.events(real_sid) == ["trial_ended"] + ["renewed"] * 11
    assert await clocked.events(clocked_sid) == []
    assert (await clocked.subscription(clocked_sid))["status"] == "trialing"


async def test_attaching_an_account_that_follows_another_clock_is_refused(clocked: Clocked) -> None:
    other = await clocked.client.post(CLOCKS, json={"name": "other"}, headers=clocked.admin)
    response = await clocked.client.post(
        f"{CLOCKS}/{other.json()['id']}/attach",
        json={"platform_id": clocked.platform.id, "external_ids": ["org-2", "org-1"]},
        headers=clocked.admin,
    )
    assert (response.status_code, response.json()["code"]) == (400, "account_on_other_clock")
    assert response.json()["errors"][0]["field"] == "external_ids.1"
    shown = await clocked.client.get(f"{CLOCKS}/{other.json()['id']}", headers=clocked.admin)
    assert shown.json()["accounts"] == []  # the refusal attached nobody


async def test_a_clock_only_moves_forward(clocked: Clocked) -> None:
    response = await clocked.client.post(
        f"{CLOCKS}/{clocked.clock_id}/advance", json={"to": (T0 - DAY).isoformat()}, headers=clocked.admin
    )
    assert (response.status_code, response.json()["code"]) == (400, "clock_moves_forward_only")
    missing = await clocked.client.post(f"{CLOCKS}/{uuid.uuid4()}/advance", json={"days": 1}, headers=clocked.admin)
    assert (missing.status_code, missing.json()["code"]) == (404, "test_clock_not_found")
    both = await clocked.client.post(
        f"{CLOCKS}/{clocked.clock_id}/advance", json={"days": 1, "to": T0.isoformat()}, headers=clocked.admin
    )
    assert both.status_code == 400


async def test_a_new_account_can_be_subscribed_onto_a_clock_at_once(clocked: Clocked) -> None:
    response = await clocked.client.post(
        f"/v1/admin/billing/platforms/{clocked.platform.id}/accounts/org-new/subscriptions",
        json={"plan": "starter", "test_clock_id": clocked.clock_id},
        headers=clocked.admin,
    )
    assert response.status_code == 201, response.text
    assert as_utc(datetime.fromisoformat(response.json()["anchor_at"])) == T0  # the clock's time, not the wall's
    shown = await clocked.client.get(f"{CLOCKS}/{clocked.clock_id}", headers=clocked.admin)
    assert sorted(shown.json()["accounts"]) == ["org-1", "org-new"]
    unknown = await clocked.client.post(
        f"/v1/admin/billing/platforms/{clocked.platform.id}/accounts/org-x/subscriptions",
        json={"plan": "starter", "test_clock_id": str(uuid.uuid4())},
        headers=clocked.admin,
    )
    assert (unknown.status_code, unknown.json()["code"]) == (404, "test_clock_not_found")
    listed = await clocked.client.get(
        f"/v1/admin/billing/platforms/{clocked.platform.id}/accounts", headers=clocked.admin
    )
    assert "org-x" not in [a["external_id"] for a in listed.json()]  # the refusal created nothing


async def test_two_renewal_runs_at_once_renew_once_and_emit_each_event_once(clocked: Clocked) -> None:
    """Two replicas' jobs racing over the same due subscription: the row lock lets one roll it; the other finds it
    rolled (SQLite: BEGIN IMMEDIATE serialises them; PostgreSQL: SELECT ... FOR UPDATE)."""
    sid = (await clocked.subscribe("pro"))["id"]
    async with clocked.runtime.session_factory() as db:
        subscription = await db.get(Subscription, uuid.UUID(sid))
        assert subscription is not None
        account_ids = [subscription.account_id]
    later = T0 + 31 * DAY

    async def run() -> int:
        async with clocked.runtime.session_factory() as db:
            return (await renew_due_subscriptions(db, now=later, account_ids=account_ids)).renewed

    results = await asyncio.gather(run(), run())
    assert sorted(results) == [0, 1]
    assert await clocked.events(sid) == ["trial_ended", "renewed"]
