"""Usage writes one by one: reservations, refunds, gauges, events, defaults, overrides, bad input, secrets."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from license_server.auth.tokens import Actor
from license_server.billing.usage.jobs import release_expired_reservations
from license_server.billing.usage.models import Reservation, UsageCounter, UsageEvent, UsageRecord
from license_server.deployments.runtime_state import DistinctFailureLimiter
from license_server.replicas.limits import FailureCounter
from license_server.runtime import Runtime
from tests.billing.conftest import Platform, PlatformFactory, consume, subscribe, tiny_plan
from tests.conftest import MovableClock

RUNS = "app_invocation.max_monthly_count"
APPS = "app.max_total_count"
QUOTAS = {RUNS: {"kind": "monthly", "limit": 10}, APPS: {"kind": "total", "limit": 2}}


@pytest.fixture
async def platform(make_platform: PlatformFactory, runtime: Runtime, actor: Actor) -> Platform:
    made = await make_platform(
        catalogues=(tiny_plan("p", QUOTAS, rate_card={"llm:gpt-4o": "0.00001", "tool:search": "0.01"}),)
    )
    await subscribe(runtime, actor, made, "org-1", "p")
    return made


async def post(client: httpx.AsyncClient, platform: Platform, tail: str, body: Any = None) -> httpx.Response:
    return await client.post(platform.url("org-1", tail), headers=platform.headers, json=body)


async def counter(runtime: Runtime, key: str = RUNS) -> tuple[int, int]:
    async with runtime.session_factory() as db:
        row = (await db.execute(select(UsageCounter.used, UsageCounter.held).where(UsageCounter.key == key))).first()
        return (int(row.used), int(row.held)) if row else (0, 0)


async def count(runtime: Runtime, model: Any) -> int:
    async with runtime.session_factory() as db:
        return int(await db.scalar(select(func.count()).select_from(model)) or 0)


async def reserve(
    client: httpx.AsyncClient, platform: Platform, request_id: str, amount: int, ttl: int = 600
) -> httpx.Response:
    return await post(
        client, platform, "usage/reserve", {"key": RUNS, "amount": amount, "request_id": request_id, "ttl_seconds": ttl}
    )


async def test_commit_frees_the_rest_and_release_after_commit_changes_nothing(
    client: httpx.AsyncClient, platform: Platform, runtime: Runtime
) -> None:
    assert (await reserve(client, platform, "job-1", 5)).status_code == 201
    assert await counter(runtime) == (0, 5)
    committed = await post(client, platform, "usage/reservations/job-1/commit", {"actual": 3})
    assert committed.status_code == 201
    assert (committed.json()["data"]["committed"], committed.json()["data"]["refunded"]) == (3, 2)
    assert await counter(runtime) == (3, 0)
    again = await post(client, platform, "usage/reservations/job-1/commit", {"actual": 3})
    assert again.json() == committed.json()
    other = await post(client, platform, "usage/reservations/job-1/commit", {"actual": 4})
    assert (other.status_code, other.json()["code"]) == (409, "idempotency_key_reused")
    released = await post(client, platform, "usage/reservations/job-1/release")
    assert released.json()["data"] == {"request_id": "job-1", "key": RUNS, "status": "committed", "released": 0}
    assert await counter(runtime) == (3, 0)


async def test_release_is_idempotent_and_commit_after_release_is_refused(
    client: httpx.AsyncClient, platform: Platform, runtime: Runtime
) -> None:
    await reserve(client, platform, "job-1", 4)
    first = await post(client, platform, "usage/reservations/job-1/release")
    second = await post(client, platform, "usage/reservations/job-1/release")
    assert first.json()["data"]["released"] == 4
    assert second.json()["data"]["released"] == 0
    assert await counter(runtime) == (0, 0)
    late = await post(client, platform, "usage/reservations/job-1/commit", {"actual": 1})
    assert (late.status_code, late.json()["code"]) == (409, "reservation_closed")
    missing = await post(client, platform, "usage/reservations/nope/release")
    assert (missing.status_code, missing.json()["code"]) == (404, "reservation_not_found")


async def test_a_commit_may_not_exceed_the_hold(
    client: httpx.AsyncClient, platform: Platform, runtime: Runtime
) -> None:
    await reserve(client, platform, "job-1", 2)
    response = await post(client, platform, "usage/reservations/job-1/commit", {"actual": 3})
    assert (response.status_code, response.json()["code"]) == (400, "commit_exceeds_reservation")
    assert await counter(runtime) == (0, 2)


async def test_expired_holds_are_released_by_the_scheduler_job_and_stop_counting(
    client: httpx.AsyncClient, platform: Platform, runtime: Runtime, clock: MovableClock
) -> None:
    assert (await reserve(client, platform, "job-1", 10, ttl=60)).status_code == 201
    assert (await reserve(client, platform, "job-2", 1)).status_code == 403
    clock.advance(timedelta(seconds=61))
    assert await release_expired_reservations(runtime) == 1
    assert await release_expired_reservations(runtime) == 0  # idempotent
    assert await counter(runtime) == (0, 0)
    late = await post(client, platform, "usage/reservations/job-1/commit", {"actual": 1})
    assert late.json()["code"] == "reservation_closed"
    assert (await reserve(client, platform, "job-3", 10)).status_code == 201


async def test_an_expired_hold_in_the_way_is_freed_by_the_write_itself(
    client: httpx.AsyncClient, platform: Platform, runtime: Runtime, clock: MovableClock
) -> None:
    await reserve(client, platform, "job-1", 10, ttl=60)
    clock.advance(timedelta(seconds=61))
    assert (await consume(client, platform, "org-1", RUNS, 10, "c-1")).status_code == 201
    assert await counter(runtime) == (10, 0)


async def test_a_refund_reverses_one_consumption_once(
    client: httpx.AsyncClient, platform: Platform, runtime: Runtime
) -> None:
    history_id = (await consume(client, platform, "org-1", RUNS, 4, "c-1")).json()["data"]["history_id"]
    first = await post(client, platform, "usage/refund", {"history_id": history_id})
    second = await post(client, platform, "usage/refund", {"history_id": history_id})
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert first.json()["data"]["refunded"] == 4
    assert await counter(runtime) == (0, 0)
    unknown = await post(client, platform, "usage/refund", {"history_id": str(uuid.uuid4())})
    assert (unknown.status_code, unknown.json()["code"]) == (404, "usage_record_not_found")


async def test_gauges_are_checked_when_a_resource_is_created(
    client: httpx.AsyncClient, platform: Platform, runtime: Runtime
) -> None:
    assert (await post(client, platform, f"gauges/{APPS}/increment", {"amount": 2})).status_code == 201
    refused = await post(client, platform, f"gauges/{APPS}/increment", {"amount": 1})
    assert (refused.status_code, refused.json()["code"], refused.json()["used"]) == (
        403,
        "subscription_limit_reached",
        2,
    )
    assert (await post(client, platform, f"gauges/{APPS}/decrement", {"amount": 5})).json()["data"]["used"] == 0
    response = await client.put(platform.url("org-1", f"gauges/{APPS}"), headers=platform.headers, json={"value": 7})
    assert response.json()["data"] == {"key": APPS, "used": 7, "limit": 2, "remaining": 0}
    wrong_kind = await consume(client, platform, "org-1", APPS, 1, "c-1")
    assert (wrong_kind.status_code, wrong_kind.json()["code"]) == (409, "quota_kind_mismatch")


async def test_an_event_cost_is_stored_exactly_at_any_scale(
    client: httpx.AsyncClient, platform: Platform, runtime: Runtime
) -> None:
    """Money is exact: 21 significant digits (a binary float keeps ~15.9: SQLite's NUMERIC read them back rounded) and
    15 decimal places (a quantity with decimals times a unit price: NUMERIC(30, 10) rounded them) come back as sent."""
    line_items = [
        {"type": "llm", "name": "gpt-4o", "quantity": "0.1234567891"},  # x 0.00001 = 0.000001234567891
        {"type": "storage", "name": "kb", "cost": "12345678901.1234567891"},
    ]
    answer = await post(client, platform, "events", {"events": [{"id": "exact-1", "line_items": line_items}]})
    assert answer.status_code == 201, answer.text
    assert answer.json()["data"]["cost"] == "12345678901.123458023667891"
    async with runtime.session_factory() as db:
        stored = await db.scalar(select(UsageEvent.cost).where(UsageEvent.event_id == "exact-1"))
    assert stored == Decimal("12345678901.123458023667891")


async def test_events_are_priced_by_the_rate_card_and_idempotent_by_id(
    client: httpx.AsyncClient, platform: Platform, runtime: Runtime
) -> None:
    event = {
        "id": "run-1",
        "agent": "agent-7",
        "line_items": [
            {"type": "llm", "name": "gpt-4o", "quantity": 1200},
            {"type": "tool", "name": "search", "quantity": "3"},
            {"type": "storage", "name": "kb", "cost": "0.0005"},
        ],
    }
    first = await post(client, platform, "events", {"events": [event, {**event, "id": "run-2"}]})
    assert first.status_code == 201, first.text
    assert first.json()["data"] == {"accepted": 2, "duplicates": 0, "cost": "0.085"}
    replay = await post(client, platform, "events", {"events": [event]})
    assert replay.json()["data"]["duplicates"] == 1
    changed = await post(client, platform, "events", {"events": [{"id": "run-3"}, {**event, "agent": "other"}]})
    assert (changed.status_code, changed.json()["code"]) == (409, "idempotency_key_reused")
    unpriced = await post(
        client,
        platform,
        "events",
        {"events": [{"id": "run-4", "line_items": [{"type": "llm", "name": "x", "quantity": 1}]}]},
    )
    assert (unpriced.status_code, unpriced.json()["code"]) == (400, "unpriced_line_item")
    assert await count(runtime, UsageEvent) == 2  # run-3 was refused with its batch


async def test_a_batch_of_1000_events_is_accepted_and_1001_refused(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    events = [{"id": f"e-{i}", "line_items": [{"type": "tool", "name": "search", "quantity": 1}]} for i in range(1001)]
    assert (await post(client, platform, "events", {"events": events[:1000]})).json()["data"]["accepted"] == 1000
    too_many = await post(client, platform, "events", {"events": events})
    assert (too_many.status_code, too_many.json()["code"]) == (400, "validation_error")


@pytest.mark.parametrize(
    "body",
    [
        {"key": RUNS, "amount": -1, "idempotency_key": "x"},
        {"key": RUNS, "amount": 0, "idempotency_key": "x"},
        {"key": RUNS, "amount": 1.0, "idempotency_key": "x"},
        {"key": RUNS, "amount": "1", "idempotency_key": "x"},
        {"key": RUNS, "amount": 10**30, "idempotency_key": "x"},
        {"key": RUNS, "amount": 1, "idempotency_key": "x", "unknown": 1},
        {"key": "Not A Key", "amount": 1, "idempotency_key": "x"},
        {"key": RUNS, "amount": 1},
        {"key": RUNS, "amount": 1, "idempotency_key": ""},
    ],
)
async def test_bad_usage_input_is_a_400_and_writes_nothing(
    client: httpx.AsyncClient, platform: Platform, runtime: Runtime, body: dict[str, Any]
) -> None:
    response = await post(client, platform, "usage/consume", body)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "validation_error"
    assert (await count(runtime, UsageRecord), await counter(runtime)) == (0, (0, 0))


@pytest.mark.parametrize(
    "line_item",
    [
        {"type": "llm", "name": "gpt-4o", "quantity": 1.5},
        {"type": "llm", "name": "gpt-4o", "cost": 0.1},
        {"type": "llm", "name": "gpt-4o", "cost": "-1"},
        {"type": "llm", "name": "gpt-4o", "cost": "NaN"},
        {"type": "llm", "name": "gpt-4o", "cost": "1e40"},
        {"type": "llm", "name": "gpt-4o"},
        {"type": "llm", "name": "gpt-4o", "cost": "1", "quantity": "1"},
        {"type": "gpu", "name": "a100", "cost": "1"},
    ],
)
async def test_bad_money_is_a_400_and_writes_nothing(
    client: httpx.AsyncClient, platform: Platform, runtime: Runtime, line_item: dict[str, Any]
) -> None:
    response = await post(client, platform, "events", {"events": [{"id": "e-1", "line_items": [line_item]}]})
    assert (response.status_code, response.json()["code"]) == (400, "validation_error"), response.text
    assert await count(runtime, UsageEvent) == 0


async def test_a_replayed_reservation_with_a_different_body_is_409_and_writes_nothing(
    client: httpx.AsyncClient, platform: Platform, runtime: Runtime
) -> None:
    await reserve(client, platform, "job-1", 2)
    other = await reserve(client, platform, "job-1", 3)
    assert (other.status_code, other.json()["code"]) == (409, "idempotency_key_reused")
    assert (await counter(runtime), await count(runtime, Reservation)) == ((0, 2), 1)


async def test_without_a_subscription_the_restrictive_defaults_apply(
    client: httpx.AsyncClient, make_platform: PlatformFactory, runtime: Runtime
) -> None:
    platform = await make_platform()
    assert (await client.get(platform.url("new-org", "status"), headers=platform.headers)).json() == {
        "data": {"status": "unset", "subscription_status": None, "trial_ends_at": None, "trial_days_remaining": None}
    }
    assert (await post_for(client, platform, "new-org", f"gauges/{APPS}/increment", {"amount": 1})).status_code == 201
    assert (await post_for(client, platform, "new-org", f"gauges/{APPS}/increment", {"amount": 1})).status_code == 403
    refused = await consume(client, platform, "new-org", RUNS, 1, "c-1")
    assert (refused.status_code, refused.json()["limit"]) == (403, 0)
    report = (await client.get(platform.url("new-org", "limits"), headers=platform.headers)).json()["data"]
    assert report["plan"] is None
    # the refused consumption left no counter behind: only the defaults and the gauge are reported
    assert {e["key"]: e.get("limit") for e in report["limits"]} == {APPS: 1, "knowledge_base.max_total_count": 1}


async def post_for(
    client: httpx.AsyncClient, platform: Platform, external_id: str, tail: str, body: Any
) -> httpx.Response:
    return await client.post(platform.url(external_id, tail), headers=platform.headers, json=body)


async def test_billing_disabled_and_overrides(
    client: httpx.AsyncClient, make_platform: PlatformFactory, platform: Platform, owner_headers: dict[str, str]
) -> None:
    disabled = await make_platform(billing_enabled=False)
    assert (await consume(client, disabled, "org-9", RUNS, 10**9, "c-1")).status_code == 201
    assert (await client.get(disabled.url("org-9", "status"), headers=disabled.headers)).json()["data"][
        "status"
    ] == "disabled"
    admin = f"/v1/admin/billing/platforms/{platform.id}/accounts/org-1/overrides/{RUNS}"
    assert (await client.put(admin, headers=owner_headers, json={"limit": 1})).status_code == 200
    assert (await consume(client, platform, "org-1", RUNS, 1, "c-1")).status_code == 201
    assert (await consume(client, platform, "org-1", RUNS, 1, "c-2")).status_code == 403
    assert (await client.put(admin, headers=owner_headers, json={"limit": None})).status_code == 200
    assert (await consume(client, platform, "org-1", RUNS, 1000, "c-3")).status_code == 201
    audit = (await client.get("/v1/admin/audit-events?action=billing.override_set", headers=owner_headers)).json()
    assert audit["total"] == 2


async def test_platform_secrets_unknown_and_revoked_are_401_and_guessing_is_throttled(
    client: httpx.AsyncClient, platform: Platform, owner_headers: dict[str, str], runtime: Runtime
) -> None:
    url = platform.url("org-1", "status")
    for headers in ({}, {"Authorization": "Bearer lsbp_wrong"}, {"Authorization": "Basic x"}):
        response = await client.get(url, headers=headers)
        assert (response.status_code, response.json()["code"]) == (401, "invalid_platform_secret")
        assert platform.secret not in response.text
    secrets = (await client.get(f"/v1/admin/billing/platforms/{platform.id}/secrets", headers=owner_headers)).json()
    assert platform.secret[-4:] == secrets[0]["secret_hint"]
    assert "secret" not in secrets[0]
    revoke = await client.delete(
        f"/v1/admin/billing/platforms/{platform.id}/secrets/{secrets[0]['id']}", headers=owner_headers
    )
    assert revoke.status_code == 200
    assert (await client.get(url, headers=platform.headers)).status_code == 401
    runtime.poll_state.failed_auth_limiter = runtime.billing.failed_auth_limiter = FailureCounter(
        DistinctFailureLimiter(3), limit=3, fingerprint=runtime.hasher.fingerprint
    )
    # Only different wrong secrets count (a platform retrying one stale secret is not guessing): a guesser's do.
    guesses = [{"Authorization": f"Bearer lsbp_guess{i}"} for i in range(5)]
    statuses = [(await client.get(url, headers=headers)).status_code for headers in guesses]
    assert statuses[-1] == 429
    # Counted as platform secrets: the owner's admin token from the same address still works.
    assert (await client.get("/v1/admin/billing/platforms", headers=owner_headers)).status_code == 200


async def test_patching_a_platform_with_nulls_is_a_400_or_a_reset_never_a_500(
    client: httpx.AsyncClient, platform: Platform, owner_headers: dict[str, str]
) -> None:
    """Found by the fuzzer: explicit nulls in PATCH crashed the handler."""
    url = f"/v1/admin/billing/platforms/{platform.id}"
    for field in ("name", "billing_enabled"):
        response = await client.patch(url, headers=owner_headers, json={field: None})
        assert (response.status_code, response.json()["code"]) == (400, "validation_error"), response.text
    await client.patch(url, headers=owner_headers, json={"restrictive_defaults": {"app.max_total_count": 5}})
    reset = await client.patch(url, headers=owner_headers, json={"restrictive_defaults": None, "default_plan": None})
    assert reset.status_code == 200, reset.text
    assert reset.json()["restrictive_defaults"] == {"app.max_total_count": 1, "knowledge_base.max_total_count": 1}
    assert reset.json()["default_plan_id"] is None


async def test_with_caching_on_this_process_reads_its_own_writes(
    client: httpx.AsyncClient, platform: Platform, runtime: Runtime, owner_headers: dict[str, str]
) -> None:
    """Reads are cache-first (5 s here); usage writes and staff changes in this process drop what they change."""
    from license_server.caching import LoadingCache

    state = runtime.billing
    state.platforms, state.accounts, state.reports = LoadingCache(5.0), LoadingCache(5.0), LoadingCache(5.0)

    async def runs_entry() -> dict[str, Any]:
        report = (await client.get(platform.url("org-1", "limits"), headers=platform.headers)).json()["data"]
        return next(e for e in report["limits"] if e["key"] == RUNS)

    assert (await runs_entry())["used"] == 0
    await consume(client, platform, "org-1", RUNS, 3, "c-1")
    assert (await runs_entry())["used"] == 3
    check = await client.get(platform.url("org-1", f"limits/{RUNS}/check?amount=8"), headers=platform.headers)
    assert check.json()["data"]["allowed"] is False
    override = f"/v1/admin/billing/platforms/{platform.id}/accounts/org-1/overrides/{RUNS}"
    await client.put(override, headers=owner_headers, json={"limit": 100})
    assert (await runs_entry())["limit"] == 100


@pytest.mark.parametrize("included", ["0.0000001", "1.1234567", "1000000000"])
async def test_plan_import_refuses_included_credits_the_ledger_cannot_hold(
    client: httpx.AsyncClient, owner_headers: dict[str, str], included: str
) -> None:
    catalogue = {"plans": [{"code": "odd", "name": "Odd", "billing": {"included_credits": included}}]}
    answer = await client.post("/v1/admin/billing/plans/import", headers=owner_headers, json=catalogue)
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "validation_error"
    assert "included_credits" in answer.text
    plans = (await client.get("/v1/admin/billing/plans", headers=owner_headers)).json()
    assert "odd" not in [plan["code"] for plan in plans]


async def test_plan_import_takes_included_credits_with_six_decimal_places(
    client: httpx.AsyncClient, owner_headers: dict[str, str]
) -> None:
    catalogue = {"plans": [{"code": "fine", "name": "Fine", "billing": {"included_credits": "999999999.999999"}}]}
    answer = await client.post("/v1/admin/billing/plans/import", headers=owner_headers, json=catalogue)
    assert answer.status_code == 201, answer.text
