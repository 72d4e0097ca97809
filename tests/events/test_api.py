"""The admin API for webhooks, deliveries and events: shapes, problems, and that secrets are shown once."""

from __future__ import annotations

import base64
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest

from license_server.auth.tokens import Role
from license_server.events.service import EventType
from license_server.events.webhooks import fan_out
from license_server.runtime import Runtime
from tests.conftest import MovableClock, TokenFactory
from tests.events.conftest import Receiver, deliver, emit, signed_correctly, verify

WEBHOOKS = "/v1/admin/webhooks"


async def create_webhook(client: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await client.post(WEBHOOKS, json=body, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def fan_out_and_deliver(runtime: Runtime, client: httpx.AsyncClient, **options: Any) -> int:
    async with runtime.session_factory() as session:
        await fan_out(session, clock=runtime.clock)
    return await deliver(runtime, client, **options)


async def test_an_endpoint_is_created_listed_updated_rotated_and_deleted(
    client: httpx.AsyncClient, owner_headers: dict[str, str], receiver: Receiver
) -> None:
    created = await create_webhook(
        client, owner_headers, url=receiver.url("/a"), event_types=["license.revoked"], description="ops"
    )
    secret = created["secret"]
    assert secret.startswith("whsec_")
    assert 24 <= len(base64.b64decode(secret.removeprefix("whsec_"))) <= 32
    assert created["event_types"] == ["license.revoked"]
    assert created["enabled"] is True
    endpoint_url = f"{WEBHOOKS}/{created['id']}"

    listed = await client.get(WEBHOOKS, headers=owner_headers)
    fetched = await client.get(endpoint_url, headers=owner_headers)
    assert listed.json()["items"] == [fetched.json()]
    assert fetched.json() == {k: v for k, v in created.items() if k != "secret"}
    for response in (listed, fetched):
        assert response.status_code == 200
        assert secret.removeprefix("whsec_") not in response.text
        assert '"secret"' not in response.text

    patched = await client.patch(
        endpoint_url, json={"event_types": [], "enabled": False, "description": "paused"}, headers=owner_headers
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["event_types"], patched.json()["enabled"], patched.json()["description"]) == (
        [],
        False,
        "paused",
    )

    rotated = await client.post(f"{endpoint_url}/rotate-secret", headers=owner_headers)
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    assert new_secret.startswith("whsec_")
    assert new_secret != secret
    assert new_secret.removeprefix("whsec_") not in (await client.get(endpoint_url, headers=owner_headers)).text

    deleted = await client.delete(endpoint_url, headers=owner_headers)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["id"] == created["id"]
    assert "secret" not in deleted.json()
    missing = await client.get(endpoint_url, headers=owner_headers)
    assert (missing.status_code, missing.json()["code"]) == (404, "webhook_not_found")
    assert (await client.delete(endpoint_url, headers=owner_headers)).status_code == 404

    audit = await client.get("/v1/admin/audit-events", params={"target_id": created["id"]}, headers=owner_headers)
    actions = [item["action"] for item in audit.json()["items"]]
    assert actions == ["webhook.deleted", "webhook.secret_rotated", "webhook.updated", "webhook.created"]
    assert all(secret.removeprefix("whsec_") not in str(item) for item in audit.json()["items"])


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "not a url",
        "example.com/hook",
        "http://",
        "https:///only-a-path",
        "http://exa mple.com/",
        "javascript:alert(1)",
        "http://example.com:99999/",
        "",
    ],
)
async def test_a_bad_url_is_a_problem_naming_the_field(
    client: httpx.AsyncClient, owner_headers: dict[str, str], url: str
) -> None:
    response = await client.post(WEBHOOKS, json={"url": url}, headers=owner_headers)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["code"] == "validation_error"
    assert [e["field"] for e in problem["errors"]] == ["url"]


async def test_an_unknown_event_type_is_a_problem_naming_the_field(
    client: httpx.AsyncClient, owner_headers: dict[str, str], receiver: Receiver
) -> None:
    body = {"url": receiver.url("/x"), "event_types": ["license.revoked", "license.exploded"]}
    response = await client.post(WEBHOOKS, json=body, headers=owner_headers)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "validation_error"
    assert [e["field"] for e in response.json()["errors"]] == ["event_types"]
    assert "license.exploded" not in response.json()["detail"]  # problems describe, they do not echo input

    created = await create_webhook(client, owner_headers, url=receiver.url("/x"))
    for patch in ({"event_types": ["nope"]}, {"url": "mailto:ops@example.com"}):
        response = await client.patch(f"{WEBHOOKS}/{created['id']}", json=patch, headers=owner_headers)
        assert response.status_code == 400, response.text
        assert [e["field"] for e in response.json()["errors"]] == list(patch)


async def test_a_failed_delivery_is_redelivered_through_the_api_with_the_same_webhook_id(
    runtime: Runtime,
    client: httpx.AsyncClient,
    owner_headers: dict[str, str],
    receiver: Receiver,
    http_client: httpx.AsyncClient,
    clock: MovableClock,
) -> None:
    created = await create_webhook(client, owner_headers, url=receiver.url("/r"))
    receiver.fail("/r", 2)
    [event_id] = await emit(runtime, EventType.LICENSE_REVOKED, license_id=uuid.uuid4())
    for _ in range(2):
        await fan_out_and_deliver(runtime, http_client, max_attempts=2)
        clock.advance(timedelta(seconds=10))  # past the first backoff (at most 5 s)

    failed = await client.get("/v1/admin/webhook-deliveries", params={"state": "failed"}, headers=owner_headers)
    [delivery] = failed.json()["items"]
    assert (delivery["state"], delivery["attempts"], delivery["last_status_code"]) == ("failed", 2, 500)
    assert (delivery["event_id"], delivery["event_type"], delivery["webhook_id"]) == (
        event_id,
        "license.revoked",
        f"evt_{event_id}",
    )
    assert created["secret"].removeprefix("whsec_") not in failed.text

    redelivered = await client.post(f"/v1/admin/webhook-deliveries/{delivery['id']}/redeliver", headers=owner_headers)
    assert redelivered.status_code == 200, redelivered.text
    assert (redelivered.json()["state"], redelivered.json()["attempts"]) == ("pending", 0)

    assert await fan_out_and_deliver(runtime, http_client, max_attempts=2) == 1
    received = receiver.to("/r")
    assert [r.status for r in received] == [500, 500, 204]
    assert {r.webhook_id for r in received} == {f"evt_{event_id}"}
    assert verify(created["secret"], received[-1])["type"] == "license.revoked"
    assert all(signed_correctly(created["secret"], r) for r in received)

    listed = await client.get(f"{WEBHOOKS}/{created['id']}/deliveries", headers=owner_headers)
    [item] = listed.json()["items"]
    assert (item["id"], item["state"], item["attempts"], item["last_error"]) == (delivery["id"], "succeeded", 1, None)
    pending = await client.get(
        f"{WEBHOOKS}/{created['id']}/deliveries", params={"state": "pending"}, headers=owner_headers
    )
    assert pending.json()["total"] == 0
    audit = await client.get("/v1/admin/audit-events", params={"action": "webhook.redelivered"}, headers=owner_headers)
    assert [e["target_id"] for e in audit.json()["items"]] == [delivery["id"]]


async def test_unknown_ids_and_bad_filters_are_problems(
    client: httpx.AsyncClient, owner_headers: dict[str, str]
) -> None:
    unknown = uuid.uuid4()
    response = await client.post(f"/v1/admin/webhook-deliveries/{unknown}/redeliver", headers=owner_headers)
    assert (response.status_code, response.json()["code"]) == (404, "webhook_delivery_not_found")
    response = await client.get(f"{WEBHOOKS}/{unknown}/deliveries", headers=owner_headers)
    assert (response.status_code, response.json()["code"]) == (404, "webhook_not_found")
    for path, params in [
        ("/v1/admin/webhook-deliveries", {"state": "lost"}),
        ("/v1/admin/events", {"type": "license.exploded"}),
        ("/v1/admin/events", {"after_id": "-1"}),
    ]:
        response = await client.get(path, params=params, headers=owner_headers)
        assert (response.status_code, response.json()["code"]) == (400, "validation_error"), (path, params)


async def test_the_event_log_is_newest_first_or_ascending_after_a_cursor(
    runtime: Runtime, client: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    viewer = {"Authorization": f"Bearer {await make_token(Role.VIEWER)}"}  # reading needs only READ
    license_id = uuid.uuid4()
    revoked, renewed = await emit(runtime, EventType.LICENSE_REVOKED, EventType.LICENSE_RENEWED, license_id=license_id)
    [created] = await emit(runtime, EventType.ACTIVATION_CREATED, license_id=uuid.uuid4(), activation_id=uuid.uuid4())
    [over] = await emit(runtime, EventType.USAGE_OVER_LIMIT, license_id=license_id, data={"workspaces": {"limit": 5}})

    async def ids(**params: Any) -> tuple[list[int], int]:
        response = await client.get("/v1/admin/events", params=params, headers=viewer)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]], response.json()["total"]

    assert await ids() == ([over, created, renewed, revoked], 4)
    assert await ids(type="license.revoked") == ([revoked], 1)
    assert await ids(license_id=str(license_id)) == ([over, renewed, revoked], 3)
    assert await ids(after_id=renewed) == ([created, over], 2)
    assert await ids(after_id=revoked, limit=1) == ([renewed], 3)
    response = await client.get("/v1/admin/events", params={"type": "usage.over_limit"}, headers=viewer)
    [item] = response.json()["items"]
    assert (item["type"], item["license_id"], item["data"]) == (
        "usage.over_limit",
        str(license_id),
        {"workspaces": {"limit": 5}},
    )
