"""The contract of shared/contracts/dify-inner-api.md, route by route, as Dify's client would call it.

Written against the ``target`` fixture, so the same tests run against the vendor server and against the edge.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.inner_api.conftest import SECRET_HEADER, Dify, Target

STATUSES = {"none", "inactive", "active", "expiring", "expired", "lost"}
INFO_KEYS = {
    "SSOEnforcedForSignin": bool,
    "SSOEnforcedForSigninProtocol": str,
    "SSOEnforcedForWebProtocol": str,
    "EnableEmailCodeLogin": bool,
    "EnableEmailPasswordLogin": bool,
    "IsAllowRegister": bool,
    "IsAllowCreateWorkspace": bool,
    "Branding": dict,
    "WebAppAuth": dict,
    "License": dict,
    "PluginInstallationPermission": dict,
    "EnableAppDeploy": bool,
}
RICH_TERMS: dict[str, Any] = {
    "workspaces": {"enabled": True, "limit": 3},
    "members_per_workspace": {"enabled": True, "limit": 4},
    "licensed_seats": {"enabled": True, "limit": 50},
    "sso": {"enforced_for_signin": True, "signin_protocol": "oidc", "enforced_for_web": True, "web_protocol": "saml"},
    "login": {"email_code": True, "email_password": False, "allow_register": True, "allow_create_workspace": True},
    "webapp_auth": {"allow_sso": True, "allow_email_code": True, "allow_email_password": False},
    "branding": {
        "application_title": "Acme AI",
        "login_page_logo": "https://acme.example/logo.png",
        "workspace_logo": "https://acme.example/ws.png",
        "favicon": "https://acme.example/favicon.ico",
    },
    "plugin_installation": {"scope": "official_only", "restrict_to_marketplace_only": True},
    "workspace_policy": {"allow_member_invite": False, "allow_owner_transfer": True},
    "entitlements": {"app_deploy": False},
}


@pytest.fixture(params=["vendor", "edge"])
def target(request: pytest.FixtureRequest) -> Target:
    """Every contract test runs against the vendor server and against the edge (``license-server edge``)."""
    chosen: Target = request.getfixturevalue(f"{request.param}_target")
    return chosen


def limit_available(limit: dict[str, Any], required: int) -> bool:
    """Dify's rule: not enabled, or 0 (unlimited), or enough left."""
    return not limit["enabled"] or limit["limit"] == 0 or limit["limit"] - limit["used"] >= required


async def dify_for(target: Target, **kwargs: Any) -> Dify:
    return Dify(target, await target.license(**kwargs))


# -- /info --------------------------------------------------------------------------------------------------------
async def test_info_has_every_key_of_the_contract_with_its_type(target: Target) -> None:
    body = await (await dify_for(target)).info()
    assert set(body) == set(INFO_KEYS)
    for key, kind in INFO_KEYS.items():
        assert isinstance(body[key], kind), key
    assert set(body["Branding"]) == {"applicationTitle", "loginPageLogo", "workspaceLogo", "favicon"}
    assert set(body["WebAppAuth"]) == {"allowSso", "allowEmailCodeLogin", "allowEmailPasswordLogin"}
    assert set(body["License"]) == {"status", "expiredAt", "workspaces", "licensedSeats"}
    for limit in (body["License"]["workspaces"], body["License"]["licensedSeats"]):
        assert set(limit) == {"enabled", "limit", "used"}
        assert isinstance(limit["enabled"], bool)
        assert isinstance(limit["limit"], int)
        assert isinstance(limit["used"], int)
    assert set(body["PluginInstallationPermission"]) == {"pluginInstallationScope", "restrictToMarketplaceOnly"}
    assert body["License"]["status"] in STATUSES


async def test_info_reflects_the_license_terms(target: Target) -> None:
    licensed = await target.license(terms=RICH_TERMS)
    body = await Dify(target, licensed).info()
    assert body["SSOEnforcedForSignin"] is True
    assert body["SSOEnforcedForSigninProtocol"] == "oidc"
    assert body["SSOEnforcedForWebProtocol"] == "saml"
    assert (body["EnableEmailCodeLogin"], body["EnableEmailPasswordLogin"]) == (True, False)
    assert (body["IsAllowRegister"], body["IsAllowCreateWorkspace"]) == (True, True)
    assert body["Branding"] == {
        "applicationTitle": "Acme AI",
        "loginPageLogo": "https://acme.example/logo.png",
        "workspaceLogo": "https://acme.example/ws.png",
        "favicon": "https://acme.example/favicon.ico",
    }
    assert body["WebAppAuth"] == {"allowSso": True, "allowEmailCodeLogin": True, "allowEmailPasswordLogin": False}
    assert body["PluginInstallationPermission"] == {
        "pluginInstallationScope": "official_only",
        "restrictToMarketplaceOnly": True,
    }
    assert body["EnableAppDeploy"] is False
    assert body["License"]["workspaces"] == {"enabled": True, "limit": 3, "used": 0}
    assert body["License"]["licensedSeats"] == {"enabled": True, "limit": 50, "used": 0}


async def test_info_expired_at_is_the_expiry_as_an_iso_date(target: Target) -> None:
    body = await (await dify_for(target)).info()
    expected = (target.clock() + timedelta(days=365)).astimezone(UTC).date().isoformat()
    assert body["License"]["expiredAt"] == expected


async def test_info_workspaces_used_comes_from_the_latest_usage_report(target: Target) -> None:
    licensed = await target.license(terms=RICH_TERMS)
    dify = Dify(target, licensed)
    await target.report_members(licensed, {"ws-a": 2, "ws-b": 1}, seats=7)
    first = (await dify.info())["License"]
    assert first["workspaces"]["used"] == 2
    assert first["licensedSeats"]["used"] == 7
    await target.report_members(licensed, {"ws-a": 2, "ws-b": 1, "ws-c": 3}, seats=9)
    latest = (await dify.info())["License"]
    assert latest["workspaces"] == {"enabled": True, "limit": 3, "used": 3}
    assert latest["licensedSeats"]["used"] == 9


async def test_a_late_report_of_an_older_measurement_does_not_replace_the_current_usage(target: Target) -> None:
    licensed = await target.license(terms=RICH_TERMS)
    dify = Dify(target, licensed)
    await target.report_members(licensed, {"ws-a": 3, "ws-b": 1, "ws-c": 1}, seats=9)
    late = target.clock() - timedelta(hours=1)  # measured before the report above, received after it
    await target.report_members(licensed, {"ws-a": 1}, seats=2, measured_at=late)
    current = (await dify.info())["License"]
    assert (current["workspaces"]["used"], current["licensedSeats"]["used"]) == (3, 9)
    assert (await dify.get("/workspace/ws-a/info")).json()["WorkspaceMembers"]["used"] == 3


async def test_the_limit_rule_applies_to_license_workspaces(target: Target) -> None:
    licensed = await target.license(terms={"workspaces": {"enabled": True, "limit": 3}})
    dify = Dify(target, licensed)
    await target.report_members(licensed, {"ws-a": 1, "ws-b": 1})
    workspaces = (await dify.info())["License"]["workspaces"]
    assert limit_available(workspaces, 1)
    assert not limit_available(workspaces, 2)
    await target.update_terms(licensed, {"workspaces": {"enabled": True, "limit": 0}})
    assert limit_available((await dify.info())["License"]["workspaces"], 1000)  # 0 means unlimited
    await target.update_terms(licensed, {"workspaces": {"enabled": False, "limit": 1}})
    assert limit_available((await dify.info())["License"]["workspaces"], 1000)  # not enabled means unlimited


# -- statuses -----------------------------------------------------------------------------------------------------
async def test_a_license_in_use_is_active(target: Target) -> None:
    assert (await (await dify_for(target)).info())["License"]["status"] == "active"


async def test_a_suspended_license_is_inactive(target: Target) -> None:
    licensed = await target.license()
    dify = Dify(target, licensed)
    assert (await dify.info())["License"]["status"] == "active"
    await target.suspend(licensed)
    assert (await dify.info())["License"]["status"] == "inactive"


async def test_a_license_not_started_yet_is_inactive_then_active(target: Target) -> None:
    dify = await dify_for(target, starts_in=timedelta(days=2))
    assert (await dify.info())["License"]["status"] == "inactive"
    target.clock.advance(timedelta(days=3))
    assert (await dify.info())["License"]["status"] == "active"


async def test_a_license_near_its_expiry_is_expiring_and_past_it_expired(target: Target) -> None:
    dify = await dify_for(target, terms={"notice_days": 30})
    assert (await dify.info())["License"]["status"] == "active"
    target.clock.advance(timedelta(days=340))
    assert (await dify.info())["License"]["status"] == "expiring"
    target.clock.advance(timedelta(days=30))
    assert (await dify.info())["License"]["status"] == "expired"


async def test_only_the_six_statuses_ever_appear(target: Target) -> None:
    dify = await dify_for(target, starts_in=timedelta(days=1))
    seen = set()
    for step in (timedelta(0), timedelta(days=2), timedelta(days=340), timedelta(days=40)):
        target.clock.advance(step)
        seen.add((await dify.info())["License"]["status"])
    assert seen <= STATUSES
    assert seen >= target.reachable_statuses - {"lost", "none"}


async def test_a_call_after_the_heartbeat_window_is_itself_a_check_in(target: Target) -> None:
    """``lost`` means the deployment stopped checking in; a deployment asking for /info has just checked in."""
    if "lost" in target.reachable_statuses:
        pytest.skip("this target reports lost itself; see its own test")
    dify = await dify_for(target, terms={"heartbeat_window_days": 1})
    await dify.info()
    await target.settle()
    target.clock.advance(timedelta(days=3))
    assert (await dify.info())["License"]["status"] == "active"


# -- per workspace ------------------------------------------------------------------------------------------------
async def test_workspace_info_gives_members_of_that_workspace_and_the_limit(target: Target) -> None:
    licensed = await target.license(terms={"members_per_workspace": {"enabled": True, "limit": 4}})
    dify = Dify(target, licensed)
    await target.report_members(licensed, {"ws-a": 3, "ws-b": 1})
    response = await dify.get("/workspace/ws-a/info")
    assert response.status_code == 200
    members = response.json()["WorkspaceMembers"]
    assert members == {"used": 3, "limit": 4, "enabled": True}
    assert limit_available(members, 1)
    assert not limit_available(members, 2)
    unknown = (await dify.get("/workspace/ws-unreported/info")).json()["WorkspaceMembers"]
    assert unknown == {"used": 0, "limit": 4, "enabled": True}


async def test_workspace_permission_is_the_license_default_unless_overridden(target: Target) -> None:
    licensed = await target.license(terms={"workspace_policy": {"allow_member_invite": False}})
    dify = Dify(target, licensed)
    default = (await dify.get("/workspaces/ws-a/permission")).json()
    assert default == {"permission": {"workspaceId": "ws-a", "allowMemberInvite": False, "allowOwnerTransfer": True}}
    await target.override_workspace(licensed, "ws-a", invite=True, transfer=False)
    overridden = (await dify.get("/workspaces/ws-a/permission")).json()["permission"]
    assert (overridden["allowMemberInvite"], overridden["allowOwnerTransfer"]) == (True, False)
    other = (await dify.get("/workspaces/ws-b/permission")).json()["permission"]
    assert (other["allowMemberInvite"], other["allowOwnerTransfer"]) == (False, True)


# -- SSO change times ---------------------------------------------------------------------------------------------
async def _times(dify: Dify) -> tuple[datetime, datetime]:
    answers = [await dify.get(f"/sso/{kind}/last-update-time") for kind in ("app", "workspace")]
    for answer in answers:
        assert answer.status_code == 200
        assert isinstance(answer.json(), str), answer.text
        assert answer.json().endswith("+00:00"), answer.text
    app, workspace = (datetime.fromisoformat(a.json()) for a in answers)
    return app, workspace


async def test_sso_times_start_at_issue_and_move_only_with_their_own_switches(target: Target) -> None:
    issued_at = target.clock()
    licensed = await target.license()
    dify = Dify(target, licensed)
    assert await _times(dify) == (issued_at, issued_at)

    target.clock.advance(timedelta(hours=1))
    await target.update_terms(licensed, {"branding": {"application_title": "Not an SSO switch"}})
    assert await _times(dify) == (issued_at, issued_at)

    target.clock.advance(timedelta(hours=1))
    web_changed = target.clock()
    await target.update_terms(licensed, {"sso": {"enforced_for_web": True, "web_protocol": "oidc"}})
    assert await _times(dify) == (web_changed, issued_at)

    target.clock.advance(timedelta(hours=1))
    signin_changed = target.clock()
    await target.update_terms(licensed, {"sso": {"enforced_for_signin": True, "signin_protocol": "saml"}})
    assert await _times(dify) == (web_changed, signin_changed)

    target.clock.advance(timedelta(hours=1))
    await target.update_terms(licensed, {"sso": {"signin_protocol": "saml"}})  # the same value: no change
    assert await _times(dify) == (web_changed, signin_changed)


# -- web apps -----------------------------------------------------------------------------------------------------
async def test_access_mode_defaults_to_private_and_can_be_set_read_and_forgotten(target: Target) -> None:
    dify = await dify_for(target)
    assert (await dify.get("/webapp/access-mode/id", params={"appId": "app-1"})).json() == {"accessMode": "private"}
    for mode in ("public", "private_all", "private"):
        answer = await dify.post("/webapp/access-mode", {"appId": "app-1", "accessMode": mode})
        assert answer.status_code == 200
        assert answer.json() == {"result": True}
        assert (await dify.get("/webapp/access-mode/id", params={"appId": "app-1"})).json() == {"accessMode": mode}
    await dify.post("/webapp/access-mode", {"appId": "app-2", "accessMode": "public"})
    batch = await dify.post("/webapp/access-mode/batch/id", {"appIds": ["app-1", "app-2", "app-3"]})
    assert batch.status_code == 200
    assert batch.json() == {"accessModes": {"app-1": "private", "app-2": "public", "app-3": "private"}}
    cleaned = await dify.delete("/webapp/clean", params={"appId": "app-2"})
    assert cleaned.status_code == 200
    assert cleaned.json() == {"result": True}
    assert (await dify.get("/webapp/access-mode/id", params={"appId": "app-2"})).json() == {"accessMode": "private"}
    again = await dify.delete("/webapp/clean", params={"appId": "never-existed"})
    assert again.status_code == 200
    assert again.json() == {"result": True}


async def test_access_modes_are_per_license(target: Target) -> None:
    one, other = await dify_for(target), await dify_for(target)
    await one.post("/webapp/access-mode", {"appId": "app-1", "accessMode": "public"})
    assert (await other.get("/webapp/access-mode/id", params={"appId": "app-1"})).json() == {"accessMode": "private"}


@pytest.mark.parametrize(
    ("mode", "listed", "expected"),
    [
        ("public", False, True),
        ("private_all", False, True),
        ("private", False, False),
        ("private", True, True),
    ],
)
async def test_webapp_permission_follows_the_mode_and_the_allow_list(
    target: Target, mode: str, listed: bool, expected: bool
) -> None:
    licensed = await target.license()
    dify = Dify(target, licensed)
    await dify.post("/webapp/access-mode", {"appId": "app-1", "accessMode": mode})
    if listed:
        await target.allow_user(licensed, "app-1", "user-1")
    single = await dify.get("/webapp/permission", params={"userId": "user-1", "appId": "app-1"})
    assert single.status_code == 200
    assert single.json() == {"result": expected}
    batch = await dify.post("/webapp/permission/batch", {"userId": "user-1", "appIds": ["app-1"]})
    assert batch.status_code == 200
    assert batch.json() == {"permissions": {"app-1": expected}}


async def test_permission_batch_answers_each_app_and_an_unknown_app_is_private(target: Target) -> None:
    licensed = await target.license()
    dify = Dify(target, licensed)
    await dify.post("/webapp/access-mode", {"appId": "open", "accessMode": "public"})
    await target.allow_user(licensed, "listed", "user-1")
    answer = await dify.post("/webapp/permission/batch", {"userId": "user-1", "appIds": ["open", "listed", "other"]})
    assert answer.json() == {"permissions": {"open": True, "listed": True, "other": False}}
    other_user = await dify.post("/webapp/permission/batch", {"userId": "user-2", "appIds": ["listed"]})
    assert other_user.json() == {"permissions": {"listed": False}}
    empty = await dify.post("/webapp/permission/batch", {"userId": "user-1", "appIds": []})
    assert empty.status_code == 200
    assert empty.json() == {"permissions": {}}


async def test_cleaning_an_app_forgets_its_allow_list(target: Target) -> None:
    licensed = await target.license()
    dify = Dify(target, licensed)
    await target.allow_user(licensed, "app-1", "user-1")
    assert (await dify.get("/webapp/permission", params={"userId": "user-1", "appId": "app-1"})).json()["result"]
    await dify.delete("/webapp/clean", params={"appId": "app-1"})
    after = await dify.get("/webapp/permission", params={"userId": "user-1", "appId": "app-1"})
    assert after.json() == {"result": False}


# -- default workspace --------------------------------------------------------------------------------------------
async def test_default_workspace_join_without_one_configured(target: Target) -> None:
    dify = await dify_for(target)
    answer = await dify.post("/default-workspace/members", {"account_id": str(uuid.uuid4())})
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"workspaceId", "joined", "message"}
    assert body["workspaceId"] == ""
    assert body["joined"] is False
    assert body["message"]


async def test_default_workspace_join_is_idempotent(target: Target) -> None:
    licensed = await target.license()
    dify = Dify(target, licensed)
    workspace = str(uuid.uuid4())
    await target.set_default_workspace(licensed, workspace)
    account = str(uuid.uuid4())
    first = (await dify.post("/default-workspace/members", {"account_id": account})).json()
    second = (await dify.post("/default-workspace/members", {"account_id": account})).json()
    for body in (first, second):
        assert set(body) == {"workspaceId", "joined", "message"}
        assert body == {"workspaceId": workspace, "joined": True, "message": body["message"]}
        assert body["message"]
    assert first["message"] != second["message"]  # the second says the account was already a member
    await target.set_default_workspace(licensed, None)
    assert (await dify.post("/default-workspace/members", {"account_id": account})).json()["joined"] is False


async def test_default_workspace_join_refuses_a_non_uuid_account(target: Target) -> None:
    dify = await dify_for(target)
    answer = await dify.post("/default-workspace/members", {"account_id": "not-a-uuid"})
    assert answer.status_code == 400
    assert "account_id" in answer.json()["message"]


# -- errors and shapes --------------------------------------------------------------------------------------------
async def test_a_missing_or_wrong_secret_is_401_with_a_message(target: Target) -> None:
    await target.license()
    for headers in ({}, {SECRET_HEADER: "lsia_wrong"}, {SECRET_HEADER: ""}, {"Authorization": "Bearer x"}):
        for method, path in (
            ("GET", "/info"),
            ("GET", "/webapp/permission"),  # missing query parameters: still 401 first
            ("GET", "/workspaces/bad%20id/permission"),
            ("POST", "/webapp/access-mode"),
            ("POST", "/default-workspace/members"),
            ("DELETE", "/webapp/clean?appId=a"),
        ):
            answer = await target.client.request(method, "/inner/api" + path, headers=headers, json={})
            assert answer.status_code == 401, (method, path, headers)
            assert answer.json()["message"], answer.text


async def test_a_revoked_secret_is_401(target: Target) -> None:
    licensed = await target.license()
    dify = Dify(target, licensed)
    assert (await dify.get("/info")).status_code == 200
    await target.revoke_secret(licensed)
    answer = await dify.get("/info")
    assert answer.status_code == 401
    assert answer.json()["message"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/webapp/access-mode", {"appId": "app-1", "accessMode": "everyone"}),
        ("/webapp/access-mode", {"appId": "app-1", "accessMode": "sso_verified"}),  # not settable by the client
        ("/webapp/access-mode", {"accessMode": "public"}),
        ("/webapp/access-mode/batch/id", {"appIds": "app-1"}),
        ("/webapp/access-mode/batch/id", {"appIds": ["app"] * 1001}),
        ("/webapp/permission/batch", {"appIds": ["app-1"]}),
        ("/webapp/permission/batch", {"userId": "u", "appIds": ["../../etc"]}),
        ("/default-workspace/members", {}),
        ("/default-workspace/members", ["not", "an", "object"]),
    ],
)
async def test_a_bad_body_is_400_with_a_message(target: Target, path: str, body: Any) -> None:
    dify = await dify_for(target)
    answer = await dify.post(path, body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["message"]


async def test_malformed_json_and_missing_query_parameters_are_400(target: Target) -> None:
    dify = await dify_for(target)
    malformed = await dify.client.post(
        "/inner/api/webapp/access-mode",
        headers={**dify.headers, "Content-Type": "application/json"},
        content=b'{"appId": ',
    )
    assert malformed.status_code == 400
    assert malformed.json()["message"]
    for path in ("/webapp/access-mode/id", "/webapp/permission?appId=a"):
        answer = await dify.get(path)
        assert answer.status_code == 400, path
        assert answer.json()["message"], path
    assert (await dify.delete("/webapp/clean")).status_code == 400
    assert (await dify.get("/workspaces/bad%20id/permission")).status_code == 400


async def test_an_unknown_route_is_404_with_a_message(target: Target) -> None:
    dify = await dify_for(target)
    answer = await dify.get("/no-such-route")
    assert answer.status_code == 404
    assert answer.json()["message"]


async def test_every_success_has_a_json_body_and_traceparent_is_tolerated(target: Target) -> None:
    licensed = await target.license()
    dify = Dify(target, licensed)
    dify.headers["traceparent"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    calls = [
        ("GET", "/info", None),
        ("GET", "/workspace/ws-1/info", None),
        ("GET", "/workspaces/ws-1/permission", None),
        ("GET", "/sso/app/last-update-time", None),
        ("GET", "/sso/workspace/last-update-time", None),
        ("GET", "/webapp/permission?userId=u&appId=a", None),
        ("POST", "/webapp/permission/batch", {"userId": "u", "appIds": ["a"]}),
        ("GET", "/webapp/access-mode/id?appId=a", None),
        ("POST", "/webapp/access-mode/batch/id", {"appIds": ["a"]}),
        ("POST", "/webapp/access-mode", {"appId": "a", "accessMode": "public"}),
        ("DELETE", "/webapp/clean?appId=a", None),
        ("POST", "/default-workspace/members", {"account_id": str(uuid.uuid4())}),
    ]
    for method, path, body in calls:
        answer = await dify.client.request(method, "/inner/api" + path, headers=dify.headers, json=body)
        assert 200 <= answer.status_code < 300, (method, path, answer.text)
        assert answer.headers["content-type"].startswith("application/json"), (method, path)
        assert answer.content, (method, path)
        assert answer.json() not in (None, ""), (method, path)
