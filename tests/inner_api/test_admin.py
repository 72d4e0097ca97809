"""The admin routes vendor staff use to manage a license's inner API."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx

from tests.inner_api.conftest import SECRET_HEADER, Target


async def _license(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    customer = (await client.post("/v1/admin/customers/", headers=headers, json={"name": "Acme"})).json()
    issued = await client.post(
        "/v1/admin/licenses/", headers=headers, json={"customer_id": customer["id"], "expires_at": "2030-01-01"}
    )
    return str(issued.json()["id"])


async def test_a_credential_secret_is_shown_once_listed_without_it_and_revocable(
    client: httpx.AsyncClient, owner_headers: dict[str, str]
) -> None:
    license_id = await _license(client, owner_headers)
    base = f"/v1/admin/licenses/{license_id}/inner-api/credentials"
    created = await client.post(base, headers=owner_headers, json={"label": "dify-prod"})
    assert created.status_code == 201
    body = created.json()
    assert body["secret"].startswith("lsia_")
    assert body["hint"] == body["secret"][-4:]
    assert body["label"] == "dify-prod"
    listed = (await client.get(base, headers=owner_headers)).json()
    assert [c["id"] for c in listed] == [body["id"]]
    assert "secret" not in listed[0]
    inner = {SECRET_HEADER: body["secret"]}
    assert (await client.get("/inner/api/info", headers=inner)).status_code == 200
    revoked = await client.delete(f"{base}/{body['id']}", headers=owner_headers)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"]
    again = await client.delete(f"{base}/{body['id']}", headers=owner_headers)
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]  # idempotent
    assert (await client.get("/inner/api/info", headers=inner)).status_code == 401


async def test_unknown_licenses_and_credentials_are_404(
    client: httpx.AsyncClient, owner_headers: dict[str, str]
) -> None:
    nobody = uuid.uuid4()
    for method, path in (
        ("POST", f"/v1/admin/licenses/{nobody}/inner-api/credentials"),
        ("GET", f"/v1/admin/licenses/{nobody}/inner-api/credentials"),
        ("GET", f"/v1/admin/licenses/{nobody}/inner-api/"),
        ("GET", f"/v1/admin/licenses/{nobody}/inner-api/apps/app-1"),
    ):
        answer = await client.request(method, path, headers=owner_headers, json={})
        assert answer.status_code == 404, (method, path, answer.text)
        assert answer.json()["code"] == "license_not_found"
    license_id = await _license(client, owner_headers)
    answer = await client.delete(
        f"/v1/admin/licenses/{license_id}/inner-api/credentials/{nobody}", headers=owner_headers
    )
    assert answer.status_code == 404
    assert answer.json()["code"] == "credential_not_found"


async def test_a_cleared_override_falls_back_to_the_license_default(
    target: Target, client: httpx.AsyncClient, owner_headers: dict[str, str]
) -> None:
    licensed = await target.license(terms={"workspace_policy": {"allow_owner_transfer": False}})
    await target.override_workspace(licensed, "ws-1", invite=False, transfer=True)
    base = f"/v1/admin/licenses/{licensed.license_id}/inner-api/workspaces"
    assert [w["workspace_id"] for w in (await client.get(base, headers=owner_headers)).json()] == ["ws-1"]
    cleared = await client.delete(f"{base}/ws-1", headers=owner_headers)
    assert cleared.json() == {"workspace_id": "ws-1", "removed": True}
    assert (await client.delete(f"{base}/ws-1", headers=owner_headers)).json()["removed"] is False
    permission = await client.get("/inner/api/workspaces/ws-1/permission", headers={SECRET_HEADER: licensed.secret})
    assert permission.json()["permission"] == {
        "workspaceId": "ws-1",
        "allowMemberInvite": True,
        "allowOwnerTransfer": False,
    }


async def test_staff_manage_modes_and_allow_lists_including_sso_verified(
    target: Target, client: httpx.AsyncClient, owner_headers: dict[str, str]
) -> None:
    licensed = await target.license()
    base = f"/v1/admin/licenses/{licensed.license_id}/inner-api/apps/app-1"
    inner = {SECRET_HEADER: licensed.secret}
    allowed = await client.post(f"{base}/allowed-users", headers=owner_headers, json={"user_ids": ["u1", "u2"]})
    assert allowed.json() == {"app_id": "app-1", "access_mode": "private", "allowed_users": ["u1", "u2"]}
    removed = await client.delete(f"{base}/allowed-users/u1", headers=owner_headers)
    assert removed.json()["allowed_users"] == ["u2"]
    query = {"userId": "u1", "appId": "app-1"}
    assert (await client.get("/inner/api/webapp/permission", params=query, headers=inner)).json() == {"result": False}
    mode = await client.put(f"{base}/access-mode", headers=owner_headers, json={"access_mode": "sso_verified"})
    assert mode.json()["access_mode"] == "sso_verified"
    assert (await client.get("/inner/api/webapp/permission", params=query, headers=inner)).json() == {"result": True}
    read = await client.get("/inner/api/webapp/access-mode/id", params={"appId": "app-1"}, headers=inner)
    assert read.json() == {"accessMode": "sso_verified"}


async def test_bad_admin_input_is_400_naming_the_field(
    client: httpx.AsyncClient, owner_headers: dict[str, str]
) -> None:
    license_id = await _license(client, owner_headers)
    base = f"/v1/admin/licenses/{license_id}/inner-api"
    for method, path, body, field in (
        ("PUT", "/default-workspace", {"workspace_id": "not-a-uuid"}, "workspace_id"),
        ("PUT", "/workspaces/ws-1", {"allow_member_invite": "yes please"}, "allow_member_invite"),
        ("PUT", "/apps/app-1/access-mode", {"access_mode": "everyone"}, "access_mode"),
        ("POST", "/apps/app-1/allowed-users", {"user_ids": []}, "user_ids"),
        ("POST", "/credentials", {"label": "x" * 201}, "label"),
    ):
        answer = await client.request(method, base + path, headers=owner_headers, json=body)
        assert answer.status_code == 400, (path, answer.text)
        assert field in answer.text
    settings = (await client.get(base + "/", headers=owner_headers)).json()
    assert settings["default_workspace_id"] is None  # nothing was written


async def test_a_quiet_deployment_is_lost_to_staff_until_its_next_call(
    target: Target, client: httpx.AsyncClient, owner_headers: dict[str, str]
) -> None:
    licensed = await target.license(terms={"heartbeat_window_days": 1})
    inner = {SECRET_HEADER: licensed.secret}
    admin_view = f"/v1/admin/licenses/{licensed.license_id}"
    assert (await client.get(admin_view, headers=owner_headers)).json()["status"] == "inactive"  # never used
    assert (await client.get("/inner/api/info", headers=inner)).json()["License"]["status"] == "active"
    await target.settle()
    assert (await client.get(admin_view, headers=owner_headers)).json()["status"] == "active"  # first use activated
    target.clock.advance(timedelta(days=2))
    assert (await client.get(admin_view, headers=owner_headers)).json()["status"] == "lost"
    assert (await client.get("/inner/api/info", headers=inner)).json()["License"]["status"] == "active"
    await target.settle()
    assert (await client.get(admin_view, headers=owner_headers)).json()["status"] == "active"
