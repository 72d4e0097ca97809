"""Staff verbs over the admin API: upgrade at once (prorated, limits at once), pause / resume, cancel at the period
end or at once, reactivate; each emits its event once, and asking again changes nothing."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal

from license_server.auth.tokens import Role
from license_server.billing.subscriptions.service import record_payment_due, record_payments_due
from license_server.clock import as_utc
from tests.billing.subscriptions.conftest import RUNS, T0, Clocked
from tests.conftest import TokenFactory

DAY = timedelta(days=1)


async def consume(clocked: Clocked, key: str) -> tuple[int, str | None]:
    response = await clocked.platform_call("POST", "usage/consume", {"key": RUNS, "idempotency_key": key})
    return response.status_code, response.json().get("code")


async def test_an_upgrade_applies_at_once_with_its_limits_and_an_exact_proration(clocked: Clocked) -> None:
    sid = (await clocked.subscribe("starter"))["id"]  # Jan 10 - Feb 10: 31 days
    for i in range(5):
        assert await consume(clocked, f"c-{i}") == (201, None)
    assert await consume(clocked, "c-5") == (403, "subscription_limit_reached")
    await clocked.advance(days=21)  # Jan 31: 10 whole days left
    detail = await clocked.act(sid, "change-plan", {"plan": "pro"})
    assert (detail["plan"], detail["pending_plan"]) == ("pro", None)
    [change] = detail["plan_changes"]
    assert (change["kind"], change["state"], change["days_left"], change["period_days"]) == (
        "upgrade",
        "applied",
        10,
        31,
    )
    # 99 * 10/31 = 31.935.. -> 31.94 credited; 399 * 10/31 = 128.709.. -> 128.71 charged
    assert (Decimal(change["credit"]), Decimal(change["charge"]), Decimal(change["net"])) == (
        Decimal("31.94"),
        Decimal("128.71"),
        Decimal("96.77"),
    )
    # the new limit holds at once (the cached snapshot was dropped), the period's usage carries over
    entry = await clocked.entry(RUNS)
    assert (entry["used"], entry["limit"]) == (5, 10)
    assert await consume(clocked, "c-6") == (201, None)
    assert await clocked.events(sid) == ["plan_changed"]
    again = await clocked.act(sid, "change-plan", {"plan": "pro"})
    assert len(again["plan_changes"]) == 1
    assert await clocked.events(sid) == ["plan_changed"]


async def test_a_scheduled_downgrade_is_withdrawn_by_asking_for_the_current_plan(clocked: Clocked) -> None:
    sid = (await clocked.subscribe("pro"))["id"]
    assert (await clocked.act(sid, "change-plan", {"plan": "starter"}))["pending_plan"] == "starter"
    kept = await clocked.act(sid, "change-plan", {"plan": "pro"})
    assert kept["pending_plan"] is None
    assert [c["state"] for c in kept["plan_changes"]] == ["withdrawn"]
    await clocked.advance(months=1, days=1)
    assert (await clocked.subscription(sid))["plan"] == "pro"


async def test_pause_refuses_runs_with_its_own_code_and_resume_restores_them(clocked: Clocked) -> None:
    sid = (await clocked.subscribe("starter"))["id"]
    assert await consume(clocked, "c-1") == (201, None)
    assert (await clocked.act(sid, "pause"))["status"] == "paused"
    assert (await clocked.act(sid, "pause"))["status"] == "paused"  # again: no change, no second event
    assert await consume(clocked, "c-2") == (403, "subscription_paused")
    refused = await clocked.platform_call("POST", "usage/reserve", {"key": RUNS, "request_id": "r-1"})
    assert (refused.status_code, refused.json()["code"]) == (403, "subscription_paused")
    report = await clocked.report()
    assert report["subscription_status"] == "paused"
    assert next(e for e in report["limits"] if e["key"] == RUNS)["used"] == 1
    assert (await clocked.act(sid, "resume"))["status"] == "active"
    assert await consume(clocked, "c-2") == (201, None)
    assert await clocked.events(sid) == ["paused", "resumed"]


async def test_cancel_at_period_end_can_be_reactivated_until_then_and_ends_it_there(clocked: Clocked) -> None:
    sid = (await clocked.subscribe("starter"))["id"]
    detail = await clocked.act(sid, "cancel", {"at_period_end": True})
    assert (detail["status"], as_utc(datetime.fromisoformat(detail["cancel_at"]))) == ("active", T0 + 31 * DAY)
    assert (await clocked.act(sid, "reactivate"))["cancel_at"] is None
    await clocked.act(sid, "cancel", {})
    await clocked.advance(months=2)
    detail = await clocked.subscription(sid)
    assert (detail["status"], as_utc(datetime.fromisoformat(detail["canceled_at"]))) == ("canceled", T0 + 31 * DAY)
    assert await clocked.events(sid) == ["cancel_scheduled", "reactivated", "cancel_scheduled", "canceled"]
    # no standing subscription: the platform's restrictive defaults (0 runs), not a lifecycle refusal
    assert await consume(clocked, "after") == (403, "subscription_limit_reached")
    status = (await clocked.platform_call("GET", "status")).json()["data"]
    assert (status["status"], status["subscription_status"]) == ("inactive", None)
    refused = await clocked.client.post(clocked.subscription_url(sid, "actions/pause"), headers=clocked.admin)
    assert (refused.status_code, refused.json()["code"]) == (409, "subscription_canceled")


async def test_a_canceled_subscription_reactivates_into_a_new_term_starting_then(clocked: Clocked) -> None:
    sid = (await clocked.subscribe("starter"))["id"]
    await clocked.advance(days=5)
    assert (await clocked.act(sid, "cancel", {"at_period_end": False}))["status"] == "canceled"
    await clocked.advance(days=3)
    detail = await clocked.act(sid, "reactivate")
    restart = T0 + 8 * DAY
    assert detail["status"] == "active"
    assert [as_utc(datetime.fromisoformat(detail[k])) for k in ("anchor_at", "current_period_start")] == [restart] * 2
    assert await clocked.events(sid) == ["canceled", "reactivated"]
    assert await consume(clocked, "c-1") == (201, None)


async def test_an_unpaid_amount_turns_past_due_after_the_grace_and_a_payment_ends_it(clocked: Clocked) -> None:
    sid = (await clocked.subscribe("starter"))["id"]
    async with clocked.runtime.session_factory() as db:
        await record_payment_due(
            db, uuid.UUID(sid), due_at=T0 + DAY, now=T0, grace=timedelta(days=3), state=clocked.runtime.billing
        )
    moved = await clocked.advance(days=5)
    assert as_utc(datetime.fromisoformat(moved["steps"][0])) == T0 + 4 * DAY  # due + grace is a boundary
    detail = await clocked.subscription(sid)
    assert (detail["status"], detail["status_reason"]) == ("past_due", "payment_overdue")
    assert await consume(clocked, "c-1") == (402, "subscription_past_due")
    assert await clocked.events(sid) == ["past_due"]


async def test_amounts_due_in_a_batch_keep_the_earliest_overdue_and_one_already_overdue_moves_at_once(
    clocked: Clocked,
) -> None:
    first = (await clocked.subscribe("starter"))["id"]
    second = (await clocked.subscribe("starter", external_id="org-2"))["id"]
    grace = timedelta(days=3)
    async with clocked.runtime.session_factory() as db:
        await record_payment_due(db, uuid.UUID(first), due_at=T0 + DAY, now=T0, grace=grace)
        # a later amount for the first (its earlier one still counts), a first one for the second, both ahead
        await record_payments_due(
            db, [(uuid.UUID(first), T0 + 9 * DAY), (uuid.UUID(second), T0 + 2 * DAY)], now=T0, grace=grace
        )
    assert as_utc(datetime.fromisoformat((await clocked.subscription(first))["payment_overdue_at"])) == T0 + 4 * DAY
    detail = await clocked.subscription(second)
    assert (as_utc(datetime.fromisoformat(detail["payment_overdue_at"])), detail["status"]) == (T0 + 5 * DAY, "active")
    # an amount already overdue when recorded moves the status in the same call
    async with clocked.runtime.session_factory() as db:
        await record_payments_due(db, [(uuid.UUID(second), T0 - 5 * DAY)], now=T0, grace=grace)
    assert (await clocked.subscription(second))["status"] == "past_due"


async def test_billing_writes_need_billing_write_and_reads_billing_read(
    clocked: Clocked, make_token: TokenFactory
) -> None:
    sid = (await clocked.subscribe("starter"))["id"]
    viewer = {"Authorization": f"Bearer {await make_token(Role.VIEWER)}"}
    billing = {"Authorization": f"Bearer {await make_token(Role.BILLING)}"}
    url = clocked.subscription_url(sid, "actions/pause")
    assert (await clocked.client.post(url, headers=viewer)).status_code == 403
    assert (await clocked.client.get(clocked.subscription_url(sid), headers=viewer)).status_code == 403
    assert (await clocked.client.post(url, headers=billing)).status_code == 201
    assert (await clocked.client.get("/v1/admin/billing/test-clocks", headers=billing)).status_code == 200
    advance = f"/v1/admin/billing/test-clocks/{clocked.clock_id}/advance"
    assert (await clocked.client.post(advance, json={"days": 1}, headers=viewer)).status_code == 403


async def test_bad_input_is_a_problem_naming_the_field(clocked: Clocked) -> None:
    sid = (await clocked.subscribe("starter"))["id"]
    unknown = await clocked.client.post(
        clocked.subscription_url(sid, "actions/change-plan"), json={"plan": "nope"}, headers=clocked.admin
    )
    assert (unknown.status_code, unknown.json()["code"]) == (404, "plan_not_found")
    missing = await clocked.client.post(
        clocked.subscription_url(str(uuid.uuid4()), "actions/pause"), headers=clocked.admin
    )
    assert (missing.status_code, missing.json()["code"]) == (404, "subscription_not_found")
    wrong = await clocked.client.post(
        clocked.subscription_url(sid, "actions/cancel"), json={"at_period_end": "yes"}, headers=clocked.admin
    )
    assert wrong.status_code == 400
