"""The contract suite, written from /work/shared/contracts/dify-billing-api.md: every route with Dify's request
shape, every response field Dify reads present with the JSON type Dify validates, and status exactly 200.

Types are checked strictly (an int is not a bool, a str is not a number), stricter than Dify's lax validation, so
an answer passing here passes Dify's ``TypeAdapter``s and the raw ``.get()`` reads that do no coercion at all.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from license_server.auth.tokens import Actor
from license_server.config import DifyBillingSettings
from license_server.inner_billing.controllers import STATE_KEY
from license_server.inner_billing.mapping import NEVER_PAID, UNLIMITED, UNLIMITED_COUNT
from license_server.inner_billing.service import InnerBilling
from license_server.runtime import Runtime
from tests.billing.conftest import Platform
from tests.inner_billing.conftest import (
    BASE,
    SECRET_HEADER,
    DifyBilling,
    new_tenant,
    record_payment,
    subscribe,
    tiny_plan,
)

INT, FLOAT, STR, BOOL = "int", "float", "str", "bool"

# contract §3.1 (BillingInfo): every required key, and its type as Dify validates it
SUBSCRIPTION_INFO = {
    "enabled": BOOL,
    "subscription": {"plan": STR, "interval": STR, "education": BOOL},
    "members": {"size": INT, "limit": INT},
    "apps": {"size": INT, "limit": INT},
    "vector_space": {"size": FLOAT, "limit": INT},
    "knowledge_rate_limit": {"limit": INT},
    "documents_upload_quota": {"size": INT, "limit": INT},
    "annotation_quota_limit": {"size": INT, "limit": INT},
    "docs_processing": STR,
    "can_replace_logo": BOOL,
    "model_load_balancing_enabled": BOOL,
    "knowledge_pipeline_publish_enabled": BOOL,
    "next_credit_reset_date": INT,
}
QUOTA = {"usage": INT, "limit": INT, "reset_date": INT}
QUOTA_INFO = {"trigger_event": QUOTA, "api_rate_limit": QUOTA}  # §3.2
RESERVE = {"reservation_id": STR, "available": INT, "reserved": INT}  # §3.3
COMMIT = {"available": INT, "reserved": INT, "refunded": INT}  # §3.4
RELEASE = {"available": INT, "reserved": INT, "released": INT}  # §3.5
KNOWLEDGE = {"limit": INT, "subscription_plan": STR}  # §3.6
PLAN_ENTRY = {"plan": STR, "expiration_date": INT}  # §3.7
URL = {"url": STR}  # §3.9-3.11


def _is(value: Any, kind: str) -> bool:
    if kind == INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == FLOAT:
        return isinstance(value, float)
    if kind == STR:
        return isinstance(value, str)
    return isinstance(value, bool)


def assert_shape(body: Any, shape: dict[str, Any], where: str = "") -> None:
    assert isinstance(body, dict), f"{where or 'body'} is not an object: {body!r}"
    for key, kind in shape.items():
        assert key in body, f"{where}{key} is missing from {body!r}"
        if isinstance(kind, dict):
            assert_shape(body[key], kind, f"{where}{key}.")
        else:
            assert _is(body[key], kind), f"{where}{key} should be a JSON {kind}: {body[key]!r}"


# -- §3.1 subscription info ---------------------------------------------------------------------------------------
async def test_a_new_workspace_is_on_sandbox_with_seed_000s_limits(dify: DifyBilling) -> None:
    body = await dify.get("/subscription/info", tenant_id=new_tenant())
    assert_shape(body, SUBSCRIPTION_INFO)
    assert body["enabled"] is True
    assert body["subscription"] == {"plan": "sandbox", "interval": "month", "education": False}
    assert body["members"] == {"size": 0, "limit": 1}
    assert body["apps"] == {"size": 0, "limit": 10}
    assert body["vector_space"] == {"size": 0.0, "limit": 10}
    assert body["documents_upload_quota"] == {"size": 0, "limit": 50}
    assert body["annotation_quota_limit"] == {"size": 0, "limit": 10}
    assert body["docs_processing"] == "standard"
    assert body["can_replace_logo"] is False
    # absent (not null): null fails Dify's validation
    assert "size" not in body["knowledge_rate_limit"]
    assert body["knowledge_rate_limit"]["limit"] == UNLIMITED_COUNT  # seed 000 sets no knowledge rate limit


async def test_team_shows_unlimited_members_and_apps_as_0_and_its_switches(
    dify: DifyBilling, runtime: Runtime, actor: Actor
) -> None:
    tenant = new_tenant()
    await subscribe(runtime, actor, dify.platform, tenant, "dify-team")
    body = await dify.get("/subscription/info", tenant_id=tenant)
    assert_shape(body, SUBSCRIPTION_INFO)
    assert body["subscription"]["plan"] == "team"
    # 0 is unlimited in Dify's resource check (0 < limit <= size)
    assert body["members"]["limit"] == 0
    assert body["apps"]["limit"] == 0
    assert body["vector_space"]["limit"] == 1024
    assert body["docs_processing"] == "priority"
    assert body["can_replace_logo"] is True


async def test_gauges_set_through_the_platform_api_are_the_sizes_dify_sees(
    dify: DifyBilling, client: httpx.AsyncClient
) -> None:
    tenant = new_tenant()
    platform = dify.platform
    for key, value in (("members", 1), ("apps", 7), ("vector_space_mb", 9), ("documents_upload", 12)):
        answer = await client.put(
            platform.url(tenant, f"gauges/{key}"), headers=platform.headers, json={"value": value}
        )
        assert answer.status_code == 200, answer.text
    body = await dify.get("/subscription/info", tenant_id=tenant)
    assert body["members"] == {"size": 1, "limit": 1}
    assert body["apps"] == {"size": 7, "limit": 10}
    assert body["vector_space"] == {"size": 9.0, "limit": 10}
    assert body["documents_upload_quota"] == {"size": 12, "limit": 50}


async def test_a_past_due_workspace_keeps_its_plan_name_and_runs_are_refused(
    dify: DifyBilling, runtime: Runtime, actor: Actor
) -> None:
    """Past due: runs paused (reserve answers exhausted), data kept (still "professional", so Dify's sandbox cleanup
    never touches it), and it resumes when active again."""
    tenant = new_tenant()
    await subscribe(runtime, actor, dify.platform, tenant, "dify-professional")
    assert (await dify.reserve(tenant, "before"))["reservation_id"] == "before"
    await record_payment(runtime, dify.platform, tenant, succeeded=False)
    refused = await dify.reserve(tenant, "while-past-due")
    assert_shape(refused, RESERVE)
    assert refused["reservation_id"] == ""
    info = await dify.get("/subscription/info", tenant_id=tenant)
    assert info["subscription"]["plan"] == "professional"
    batch = await dify.post("/subscription/plan/batch", {"tenant_ids": [tenant]})
    assert batch["data"][tenant]["plan"] == "professional"
    assert batch["data"][tenant]["expiration_date"] > 0
    await record_payment(runtime, dify.platform, tenant, succeeded=True)
    assert (await dify.reserve(tenant, "after"))["reservation_id"] == "after"


async def test_an_unknown_tenant_id_shape_is_400_and_a_missing_secret_401(dify: DifyBilling) -> None:
    bad = await dify.raw("GET", "/subscription/info", params={"tenant_id": "../x"})
    assert bad.status_code == 400
    assert bad.json()["code"] == "validation_error"
    missing = await dify.client.get(BASE + "/subscription/info", params={"tenant_id": new_tenant()})
    assert missing.status_code == 401
    assert missing.json()["code"] == "invalid_platform_secret"
    assert SECRET_HEADER in missing.json()["detail"]


@pytest.mark.parametrize(
    ("method", "endpoint"),
    [("GET", "/subscription/info"), ("GET", "/quota/info"), ("POST", "/quota/reserve"), ("GET", "/invoices")],
)
async def test_a_wrong_secret_is_401_whatever_the_input(dify: DifyBilling, method: str, endpoint: str) -> None:
    answer = await dify.client.request(
        method, BASE + endpoint, headers={SECRET_HEADER: "lsbp_not-a-secret", "Content-Type": "application/json"}
    )
    assert answer.status_code == 401


async def test_an_admin_token_is_not_a_billing_secret(dify: DifyBilling, owner_headers: dict[str, str]) -> None:
    token = owner_headers["Authorization"].removeprefix("Bearer ")
    answer = await dify.client.get(
        BASE + "/quota/info", params={"tenant_id": new_tenant()}, headers={SECRET_HEADER: token}
    )
    assert answer.status_code == 401


# -- §3.2 quota info and §3.3-3.5 reserve / commit / release ------------------------------------------------------
@pytest.fixture
async def metered(make_platform: Any) -> Platform:
    plan = tiny_plan(
        "metered",
        {"trigger_event": {"kind": "monthly", "limit": 2}, "api_rate_limit": {"kind": "monthly", "limit": 5}},
    )
    platform: Platform = await make_platform(default_plan="metered", catalogues=(plan,))
    return platform


@pytest.fixture
def metered_dify(client: httpx.AsyncClient, metered: Platform) -> DifyBilling:
    return DifyBilling(client, metered)


async def test_quota_info_has_both_keys_and_unlimited_is_minus_1(dify: DifyBilling) -> None:
    body = await dify.get("/quota/info", tenant_id=new_tenant())
    assert_shape(body, QUOTA_INFO)
    # seed 000 defines neither key: unlimited on its plans
    assert body["trigger_event"]["limit"] == body["api_rate_limit"]["limit"] == UNLIMITED
    assert body["trigger_event"]["reset_date"] > 1_000_000_000  # Unix seconds: the current period's end


async def test_reserve_commit_release_round_trip(metered_dify: DifyBilling) -> None:
    dify, tenant = metered_dify, new_tenant()
    held = await dify.reserve(tenant, "run-1")
    assert_shape(held, RESERVE)
    assert held == {"reservation_id": "run-1", "available": 4, "reserved": 1}
    again = await dify.reserve(tenant, "run-1")  # tenacity retries the same payload
    assert again == held
    info = await dify.get("/quota/info", tenant_id=tenant)
    assert info["api_rate_limit"] == {"usage": 1, "limit": 5, "reset_date": info["api_rate_limit"]["reset_date"]}

    committed = await dify.post(
        "/quota/commit",
        {"tenant_id": tenant, "feature_key": "api_rate_limit", "reservation_id": "run-1", "actual_amount": 1},
    )
    assert_shape(committed, COMMIT)
    assert committed == {"available": 4, "reserved": 0, "refunded": 0}
    # Dify's QuotaCharge.refund() does not check _committed: release after commit must be a no-op
    released = await dify.post(
        "/quota/release", {"tenant_id": tenant, "feature_key": "api_rate_limit", "reservation_id": "run-1"}
    )
    assert_shape(released, RELEASE)
    assert released == {"available": 4, "reserved": 0, "released": 0}
    assert (await dify.get("/quota/info", tenant_id=tenant))["api_rate_limit"]["usage"] == 1


async def test_release_frees_the_hold_once(metered_dify: DifyBilling) -> None:
    dify, tenant = metered_dify, new_tenant()
    await dify.reserve(tenant, "run-1", amount=3)
    body = {"tenant_id": tenant, "feature_key": "api_rate_limit", "reservation_id": "run-1"}
    assert await dify.post("/quota/release", body) == {"available": 5, "reserved": 0, "released": 3}
    assert await dify.post("/quota/release", body) == {"available": 5, "reserved": 0, "released": 0}


async def test_commit_below_the_hold_refunds_the_difference(metered_dify: DifyBilling) -> None:
    dify, tenant = metered_dify, new_tenant()
    await dify.reserve(tenant, "run-1", amount=3)
    committed = await dify.post(
        "/quota/commit",
        {"tenant_id": tenant, "feature_key": "api_rate_limit", "reservation_id": "run-1", "actual_amount": 1},
    )
    assert committed == {"available": 4, "reserved": 0, "refunded": 2}


async def test_exhaustion_is_a_200_with_an_empty_reservation_id(metered_dify: DifyBilling) -> None:
    dify, tenant = metered_dify, new_tenant()
    assert (await dify.reserve(tenant, "t-1", feature_key="trigger_event"))["reservation_id"] == "t-1"
    assert (await dify.reserve(tenant, "t-2", feature_key="trigger_event"))["reservation_id"] == "t-2"
    refused = await dify.reserve(tenant, "t-3", feature_key="trigger_event")
    assert_shape(refused, RESERVE)
    assert refused == {"reservation_id": "", "available": 0, "reserved": 0}


async def test_reserve_refuses_an_unknown_feature_key_or_a_zero_amount(metered_dify: DifyBilling) -> None:
    tenant = new_tenant()
    for body in (
        {"tenant_id": tenant, "feature_key": "tokens", "request_id": "r", "amount": 1},
        {"tenant_id": tenant, "feature_key": "api_rate_limit", "request_id": "r", "amount": 0},
        {"tenant_id": tenant, "feature_key": "api_rate_limit", "amount": 1},
    ):
        answer = await metered_dify.raw("POST", "/quota/reserve", json=body)
        assert answer.status_code == 400, answer.text


async def test_reserve_accepts_dify_meta_and_unknown_keys(metered_dify: DifyBilling) -> None:
    held = await metered_dify.post(
        "/quota/reserve",
        {
            "tenant_id": new_tenant(),
            "feature_key": "api_rate_limit",
            "request_id": "r-meta",
            "amount": 1,
            "meta": {"app_id": "a"},
            "newer_field": 1,
        },
    )
    assert held["reservation_id"] == "r-meta"


# -- §3.6-3.8 ------------------------------------------------------------------------------------------------------
async def test_knowledge_rate_limit_is_numbers_from_the_plan(client: httpx.AsyncClient, make_platform: Any) -> None:
    plan = tiny_plan("kb", {}, rate_limits={"knowledge_requests": {"limit": 100, "window_seconds": 60}})
    dify = DifyBilling(client, await make_platform(default_plan="kb", catalogues=(plan,)))
    body = await dify.get("/subscription/knowledge-rate-limit", tenant_id=new_tenant())
    assert_shape(body, KNOWLEDGE)
    assert body == {"limit": 100, "subscription_plan": "professional"}  # "kb" is unmapped: the paid default


async def test_plan_batch_names_each_workspace_and_when_its_paid_period_ends(
    dify: DifyBilling, runtime: Runtime, actor: Actor
) -> None:
    free, paid = new_tenant(), new_tenant()
    await subscribe(runtime, actor, dify.platform, paid, "dify-professional")
    body = await dify.post("/subscription/plan/batch", {"tenant_ids": [free, paid]})
    assert set(body["data"]) == {free, paid}
    for entry in body["data"].values():
        assert_shape(entry, PLAN_ENTRY)
    assert body["data"][free] == {"plan": "sandbox", "expiration_date": NEVER_PAID}
    # the subscription started at the test clock's now (2026-06-01 12:00 UTC): its period ends a month later
    assert body["data"][paid] == {"plan": "professional", "expiration_date": 1782907200}


async def test_plan_batch_takes_at_most_200_ids(dify: DifyBilling) -> None:
    answer = await dify.raw("POST", "/subscription/plan/batch", json={"tenant_ids": [new_tenant() for _ in range(201)]})
    assert answer.status_code == 400


async def test_cleanup_whitelist_is_a_data_list(dify: DifyBilling) -> None:
    assert await dify.get("/subscription/cleanup/whitelist") == {"data": []}


# -- §3.9-3.11 links -----------------------------------------------------------------------------------------------
async def test_links_fill_the_configured_templates(dify: DifyBilling, app: Any, runtime: Runtime) -> None:
    config = DifyBillingSettings(
        payment_link_url="https://pay.example/checkout?plan={plan}&interval={interval}&t={tenant_id}&e={prefilled_email}",
        invoices_url="https://pay.example/invoices/{tenant_id}",
        model_provider_payment_url="https://pay.example/credits/{provider_name}?t={tenant_id}",
    )
    app.state[STATE_KEY] = InnerBilling(runtime.billing, config)
    tenant = new_tenant()
    pay = await dify.get(
        "/subscription/payment-link", plan="team", interval="year", prefilled_email="a+b@x.io", tenant_id=tenant
    )
    assert_shape(pay, URL)
    assert pay["url"] == f"https://pay.example/checkout?plan=team&interval=year&t={tenant}&e=a%2Bb%40x.io"
    invoices = await dify.get("/invoices", prefilled_email="a@x.io", tenant_id=tenant)
    assert invoices == {"url": f"https://pay.example/invoices/{tenant}"}
    credits = await dify.get(
        "/model-provider/payment-link",
        provider_name="anthropic",
        tenant_id=tenant,
        account_id="acc",
        prefilled_email="",
    )
    assert credits == {"url": f"https://pay.example/credits/anthropic?t={tenant}"}


async def test_links_without_a_configured_template_are_empty_urls(
    dify: DifyBilling, app: Any, runtime: Runtime
) -> None:
    # Without the server's own answers (no Stripe, no portal: tests/inner_billing/test_links.py has those).
    app.state[STATE_KEY] = InnerBilling(runtime.billing, DifyBillingSettings())
    tenant = new_tenant()
    pay = await dify.get(
        "/subscription/payment-link", plan="professional", interval="month", prefilled_email="", tenant_id=tenant
    )
    assert pay == {"url": ""}
    assert await dify.get("/invoices", prefilled_email="", tenant_id=tenant) == {"url": ""}


async def test_a_payment_link_for_sandbox_is_400(dify: DifyBilling) -> None:
    answer = await dify.raw(
        "GET",
        "/subscription/payment-link",
        params={"plan": "sandbox", "interval": "month", "prefilled_email": "", "tenant_id": new_tenant()},
    )
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["field"] == "plan"


# -- §3.12-3.15 legacy usage ---------------------------------------------------------------------------------------
async def test_legacy_usage_consumes_and_refund_reverses_it_once(metered_dify: DifyBilling) -> None:
    dify, tenant = metered_dify, new_tenant()
    used = await dify.post("/tenant-feature-usage/usage", tenant_id=tenant, feature_key="workflow", delta=-2)
    assert used["result"] == "success"
    assert isinstance(used["history_id"], str)
    assert used["history_id"]
    usage = await dify.get("/billing/tenant_feature_plan/usage", tenant_id=tenant, feature_key="workflow")
    assert usage == {"used": 2, "limit": 5, "remaining": 3}
    refund = await dify.post("/tenant-feature-usage/refund", quota_usage_history_id=used["history_id"])
    assert refund == {"result": "success", "history_id": used["history_id"]}
    await dify.post("/tenant-feature-usage/refund", quota_usage_history_id=used["history_id"])
    usage = await dify.get("/billing/tenant_feature_plan/usage", tenant_id=tenant, feature_key="api_rate_limit")
    assert usage == {"used": 0, "limit": 5, "remaining": 5}
    assert_shape(await dify.get("/tenant-feature-usage/info", tenant_id=tenant), QUOTA_INFO)


async def test_legacy_usage_delta_0_writes_nothing_and_a_positive_delta_is_400(metered_dify: DifyBilling) -> None:
    dify, tenant = metered_dify, new_tenant()
    assert await dify.post("/tenant-feature-usage/usage", tenant_id=tenant, feature_key="trigger", delta=0) == {
        "result": "success",
        "history_id": "",
    }
    positive = await dify.raw(
        "POST", "/tenant-feature-usage/usage", params={"tenant_id": tenant, "feature_key": "trigger", "delta": 5}
    )
    assert positive.status_code == 400
    assert positive.json()["code"] == "quota_grant_not_supported"
    assert (await dify.get("/quota/info", tenant_id=tenant))["trigger_event"]["usage"] == 0


async def test_legacy_refund_of_an_unknown_history_id_is_404(metered_dify: DifyBilling) -> None:
    answer = await metered_dify.raw(
        "POST", "/tenant-feature-usage/refund", params={"quota_usage_history_id": new_tenant()}, content=b""
    )
    assert answer.status_code == 404


# -- §4 the Dify-cloud extras --------------------------------------------------------------------------------------
async def test_the_extras_answer_their_documented_defaults(dify: DifyBilling) -> None:
    account, tenant = new_tenant(), new_tenant()
    assert await dify.call("DELETE", "/account", params={"account_id": account}) == {"result": "success"}
    freeze = await dify.get("/account/in-freeze", email="a@x.io")
    assert freeze == {"data": False}
    assert freeze["data"] is False  # a JSON boolean: the string "false" is truthy in Dify
    assert await dify.post("/account/delete-feedback", {"email": "a@x.io", "feedback": "bye"}) == {"result": "success"}
    assert await dify.get("/education/verify", account_id=account) == {"token": ""}
    status = await dify.get("/education/status", account_id=account)
    assert_shape(status, {"result": BOOL, "is_student": BOOL, "allow_refresh": BOOL, "expire_at": STR})
    from datetime import datetime

    datetime.fromisoformat(status["expire_at"])  # Dify parses it so
    activated = await dify.post(
        "/education/", {"institution": "MIT", "token": "", "role": "Student"}, account_id=account, curr_tenant_id=tenant
    )
    assert_shape(activated, {"message": STR})
    auto = await dify.get("/education/autocomplete", keywords="mi", page=0, limit=20)
    assert auto == {"data": [], "curr_page": 0, "has_next": False}
    compliance = await dify.post(
        "/compliance/download",
        {"doc_name": "soc2", "account_id": account, "tenant_id": tenant, "ip_address": "1.2.3.4", "device_info": "x"},
    )
    assert_shape(compliance, URL)
    partner = await dify.call("PUT", "/partners/partner-1/tenants", json={"account_id": account, "click_id": "c"})
    assert partner == {"result": "success"}
    active = await dify.get("/notifications/active", account_id=account)
    assert active == {"shouldShow": False, "notifications": []}
    created = await dify.post(
        "/notifications",
        {
            "contents": [{"lang": "en-US", "title": "t", "subtitle": "", "body": "b", "title_pic_url": ""}],
            "frequency": "once",
            "status": "active",
        },
    )
    assert_shape(created, {"notificationId": STR})
    assert await dify.post(f"/notifications/{created['notificationId']}/accounts", {"account_ids": [account]}) == {
        "count": 0
    }
    assert await dify.post("/notifications/n-1/dismiss", {"account_id": account}) == {"result": "success"}
    utm: dict[str, Any] = {
        "tenant_id": tenant,
        "utm_source": "",
        "utm_medium": "",
        "utm_campaign": "",
        "utm_content": "",
        "utm_term": "",
    }
    assert await dify.post("/tenant_utms", **utm) == {"result": "success"}


async def test_a_platform_with_billing_off_says_enabled_false(client: httpx.AsyncClient, make_platform: Any) -> None:
    dify = DifyBilling(client, await make_platform(billing_enabled=False))
    body = await dify.get("/subscription/info", tenant_id=new_tenant())
    assert_shape(body, SUBSCRIPTION_INFO)
    assert body["enabled"] is False


async def test_every_route_refuses_a_missing_or_unknown_secret_before_reading_input(
    app: Any, client: httpx.AsyncClient
) -> None:
    checked = 0
    for route in app.routes:
        if not route.path.startswith(BASE):
            continue
        path = route.path.replace("{partner_key:str}", "p").replace("{notification_id:str}", "n")
        for handler in getattr(route, "route_handlers", []):
            for method in sorted(handler.http_methods - {"OPTIONS", "HEAD"}):
                for headers in ({}, {SECRET_HEADER: "lsbp_unknown"}, {"Authorization": "Bearer lsbp_unknown"}):
                    answer = await client.request(method, path, headers={**headers, "Content-Type": "application/json"})
                    assert answer.status_code == 401, (method, path, answer.text)
                    checked += 1
    assert checked == 3 * 29  # the contract's 29 routes
