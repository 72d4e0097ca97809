"""The lifecycle end to end on a test clock, over the admin and platform APIs (SQLite and PostgreSQL): trial ->
active (first invoice, paid) -> renewal (next invoice) -> failed payment -> past due (runs refused, data intact) ->
paid -> active -> downgrade at the period end, with the statuses, events, invoices and quotas (reset at each
period) asserted at each step. Payments are the manual provider's, over the admin API, as staff record them."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from license_server.billing.subscriptions.service import record_payment_outcome, renew_due_subscriptions
from license_server.clock import as_utc
from tests.billing.subscriptions.conftest import APPS, RUNS, T0, Clocked, sub_id

DAY = timedelta(days=1)


def as_utc_text(value: str) -> datetime:
    return as_utc(datetime.fromisoformat(value))


async def consume(clocked: Clocked, key: str) -> tuple[int, str | None]:
    response = await clocked.platform_call("POST", "usage/consume", {"key": RUNS, "idempotency_key": key})
    return response.status_code, response.json().get("code")


async def invoices(clocked: Clocked) -> list[tuple[str, str, str, datetime]]:
    """(status, total, plan, period start) of the account's invoices, oldest first."""
    response = await clocked.platform_call("GET", "invoices")
    assert response.status_code == 200, response.text
    rows = response.json()["data"]["invoices"]
    return sorted(
        ((r["status"], r["total"], r["plan_code"], as_utc_text(r["period_start"])) for r in rows), key=lambda r: r[3]
    )


async def open_invoice_number(clocked: Clocked) -> str:
    response = await clocked.platform_call("GET", "invoices")
    [number] = [r["number"] for r in response.json()["data"]["invoices"] if r["status"] == "open"]
    return str(number)


async def staff_records(clocked: Clocked, number: str, tail: str, body: dict[str, str]) -> None:
    response = await clocked.client.post(
        f"/v1/admin/billing/invoices/{number}/{tail}", json=body, headers=clocked.admin
    )
    assert response.status_code == 201, response.text


async def test_trial_renewal_past_due_recovery_and_downgrade_on_a_test_clock(clocked: Clocked) -> None:
    sub = await clocked.subscribe("pro")
    sid = sub["id"]
    # -- trialing: 14 days on the clock's time, quotas of Pro
    assert (sub["status"], sub["trial_days_remaining"]) == ("trialing", 14)
    assert as_utc_text(sub["current_period_start"]) == T0
    assert as_utc_text(sub["trial_ends_at"]) == T0 + 14 * DAY
    for i in range(3):
        assert await consume(clocked, f"trial-{i}") == (201, None)
    report = await clocked.report()
    assert (report["subscription_status"], report["trial_days_remaining"]) == ("trialing", 14)
    assert (await clocked.entry(RUNS))["used"] == 3
    assert await clocked.events(sid) == []

    # -- three days before the trial ends: the notice, once
    moved = await clocked.advance(days=11)
    assert [as_utc_text(s) for s in moved["steps"]] == [T0 + 11 * DAY]
    assert await clocked.events(sid) == ["trial_will_end"]
    status = (await clocked.platform_call("GET", "status")).json()["data"]
    assert (status["subscription_status"], status["trial_days_remaining"]) == ("trialing", 3)

    # -- the trial ends (no payment method needed): active, same period, same counters
    await clocked.advance(days=3)
    detail = await clocked.subscription(sid)
    assert (detail["status"], detail["trial_days_remaining"], detail["status_reason"]) == ("active", 0, "trial_ended")
    assert await clocked.events(sid) == ["trial_will_end", "trial_ended"]
    assert (await clocked.entry(RUNS))["used"] == 3
    # ... and the period's invoice is issued: Pro's fee in advance, due in the payment terms; staff record its payment
    assert await invoices(clocked) == [("open", "399.00", "pro", T0)]
    await staff_records(
        clocked, await open_invoice_number(clocked), "payments", {"amount": "399.00", "idempotency_key": "pay-1"}
    )
    assert await invoices(clocked) == [("paid", "399.00", "pro", T0)]
    assert (await clocked.subscription(sid))["status"] == "active"

    # -- the period ends: renewed once, counters start afresh
    moved = await clocked.advance(to=(T0 + 31 * DAY).isoformat())  # Feb 10
    assert [as_utc_text(s) for s in moved["steps"]] == [T0 + 31 * DAY]
    detail = await clocked.subscription(sid)
    assert as_utc_text(detail["current_period_start"]) == T0 + 31 * DAY
    assert as_utc_text(detail["current_period_end"]) == T0 + 59 * DAY  # Mar 10
    assert await clocked.events(sid) == ["trial_will_end", "trial_ended", "renewed"]
    assert (await clocked.entry(RUNS))["used"] == 0
    assert await invoices(clocked) == [("paid", "399.00", "pro", T0), ("open", "399.00", "pro", T0 + 31 * DAY)]
    held = await clocked.platform_call("POST", "usage/reserve", {"key": RUNS, "amount": 2, "request_id": "job-1"})
    assert held.status_code == 201, held.text
    assert (await clocked.platform_call("POST", f"gauges/{APPS}/increment", {"amount": 1})).status_code == 201

    # -- the renewal's payment fails: past due; new runs are refused with their own code and write nothing
    now = T0 + 31 * DAY
    second = await open_invoice_number(clocked)
    await staff_records(clocked, second, "failures", {"idempotency_key": "fail-1", "reason": "card declined"})
    assert (await clocked.subscription(sid))["status"] == "past_due"
    assert await consume(clocked, "late-1") == (402, "subscription_past_due")
    refused = await clocked.platform_call("POST", "usage/reserve", {"key": RUNS, "amount": 1, "request_id": "job-2"})
    assert (refused.status_code, refused.json()["code"]) == (402, "subscription_past_due")
    # ... while the hold taken before commits, gauges move, and reads answer with the status
    committed = await clocked.platform_call("POST", "usage/reservations/job-1/commit", {"actual": 1})
    assert committed.status_code == 201, committed.text
    assert (await clocked.platform_call("POST", f"gauges/{APPS}/increment", {"amount": 1})).status_code == 201
    report = await clocked.report()
    assert report["subscription_status"] == "past_due"
    entries = {e["key"]: e for e in report["limits"]}
    assert (entries[RUNS]["used"], entries[RUNS].get("held", 0), entries[RUNS]["limit"]) == (1, 0, 10)
    assert (entries[APPS]["used"], entries[APPS]["limit"]) == (2, 5)
    check = (await clocked.platform_call("GET", f"limits/{RUNS}/check")).json()["data"]
    assert check["used"] == 1
    # a second failure report changes nothing and emits nothing
    async with clocked.runtime.session_factory() as db:
        await record_payment_outcome(db, sub_id(sub), succeeded=False, now=now, state=clocked.runtime.billing)
    assert await clocked.events(sid) == ["trial_will_end", "trial_ended", "renewed", "past_due"]

    # -- paid: active again at once, runs resume
    await staff_records(clocked, second, "payments", {"amount": "399.00", "idempotency_key": "pay-2"})
    assert (await clocked.subscription(sid))["status"] == "active"
    assert [status for status, *_ in await invoices(clocked)] == ["paid", "paid"]
    assert await consume(clocked, "paid-1") == (201, None)
    assert (await clocked.entry(RUNS))["used"] == 2
    assert (await clocked.events(sid))[-1] == "resumed"

    # -- a downgrade waits for the period end; Pro's limits stand until then
    detail = await clocked.act(sid, "change-plan", {"plan": "starter"})
    assert (detail["plan"], detail["pending_plan"]) == ("pro", "starter")
    assert [(c["kind"], c["state"]) for c in detail["plan_changes"]] == [("downgrade", "scheduled")]
    assert (await clocked.entry(RUNS))["limit"] == 10
    await clocked.advance(to=(T0 + 59 * DAY).isoformat())  # Mar 10
    detail = await clocked.subscription(sid)
    assert (detail["plan"], detail["pending_plan"], detail["status"]) == ("starter", None, "active")
    assert [(c["kind"], c["state"]) for c in detail["plan_changes"]] == [("downgrade", "applied")]
    entry = await clocked.entry(RUNS)
    assert (entry["used"], entry["limit"]) == (0, 5)
    # the new period is billed at the plan it downgraded to
    assert (await invoices(clocked))[-1] == ("open", "99.00", "starter", T0 + 59 * DAY)
    assert await clocked.events(sid) == [
        "trial_will_end",
        "trial_ended",
        "renewed",
        "past_due",
        "resumed",
        "downgrade_scheduled",
        "plan_changed",
        "renewed",
    ]
    # the jobs run again at the same instant find nothing to do and emit nothing
    async with clocked.runtime.session_factory() as db:
        again = await renew_due_subscriptions(db, now=T0 + 59 * DAY, account_ids=[uuid.UUID(sid)])
    assert again.renewed == 0
    assert len(await clocked.events(sid)) == 8
