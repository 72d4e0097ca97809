"""The platform API end to end: an account seen first is created on the default plan, consumes until refused with
seed 004's code and message, and reads its limits report and status in seed 004's shapes."""

from __future__ import annotations

import httpx

from license_server.auth.tokens import Actor
from license_server.runtime import Runtime
from tests.billing.conftest import PlatformFactory, consume, subscribe, tiny_plan

MESSAGES = "conversation_message.max_monthly_count"


async def test_consume_until_refused_then_the_limits_report_shows_it(
    client: httpx.AsyncClient, make_platform: PlatformFactory
) -> None:
    platform = await make_platform(
        default_plan="starter",
        catalogues=(
            tiny_plan(
                "starter",
                {MESSAGES: {"kind": "monthly", "limit": 3}, "app.max_total_count": {"kind": "total", "limit": 2}},
            ),
        ),
    )
    for i in range(3):
        response = await consume(client, platform, "org-1", MESSAGES, 1, f"msg-{i}")
        assert response.status_code == 201, response.text
        assert response.json()["data"]["remaining"] == 2 - i
    refused = await consume(client, platform, "org-1", MESSAGES, 1, "msg-3")
    assert refused.status_code == 403
    body = refused.json()
    assert body["code"] == "subscription_limit_reached"
    assert body["detail"] == "This organization has reached its subscription limit. Please upgrade the plan."
    assert (body["key"], body["limit"], body["used"]) == (MESSAGES, 3, 3)

    report = (await client.get(platform.url("org-1", "limits"), headers=platform.headers)).json()["data"]
    assert report["plan"] == "starter"
    entries = {e["key"]: e for e in report["limits"]}
    assert entries[MESSAGES] == {
        "key": MESSAGES,
        "group": "monthly",
        "used": 3,
        "limit": 3,
        "remaining": 0,
    }
    assert entries["app.max_total_count"]["group"] == "total"
    status = await client.get(platform.url("org-1", "status"), headers=platform.headers)
    assert status.json()["data"] == {
        "status": "active",
        "subscription_status": "active",
        "trial_ends_at": None,
        "trial_days_remaining": None,
    }


async def test_a_replay_answers_the_first_result_and_a_different_body_is_409(
    client: httpx.AsyncClient, make_platform: PlatformFactory, runtime: Runtime, actor: Actor
) -> None:
    platform = await make_platform(catalogues=(tiny_plan("p", {MESSAGES: {"kind": "monthly", "limit": 10}}),))
    await subscribe(runtime, actor, platform, "org-1", "p")
    first = await consume(client, platform, "org-1", MESSAGES, 2, "k-1")
    again = await consume(client, platform, "org-1", MESSAGES, 2, "k-1")
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    other = await consume(client, platform, "org-1", MESSAGES, 3, "k-1")
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency_key_reused"
    report = (await client.get(platform.url("org-1", "limits"), headers=platform.headers)).json()["data"]
    assert {e["key"]: e["used"] for e in report["limits"]}[MESSAGES] == 2
