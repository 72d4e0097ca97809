"""The admin HTTP API end to end: a vendor issues, reads, acts on and downloads licenses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from license_server.auth.models import AuditEvent
from license_server.licenses.models import License
from license_server.runtime import Runtime
from license_server.verifier import Verifier
from tests.conftest import MovableClock
from tests.keyring import root_of

Client = httpx.AsyncClient


async def create_customer(client: Client, headers: dict[str, str], **fields: Any) -> str:
    response = await client.post("/v1/admin/customers", json={"name": "Acme", **fields}, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def issue(client: Client, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    customer_id = fields.pop("customer_id", None) or await create_customer(client, headers)
    body = {"customer_id": customer_id, "expires_at": "2027-12-31", **fields}
    response = await client.post("/v1/admin/licenses", json=body, headers=headers)
    assert response.status_code == 201, response.text
    payload: dict[str, Any] = response.json()
    return payload


async def count_rows(runtime: Runtime, model: type[Any]) -> int:
    async with runtime.session_factory() as db:
        return int(await db.scalar(select(func.count()).select_from(model)) or 0)


async def test_issue_read_act_and_download_a_license(
    client: Client, owner_headers: dict[str, str], runtime: Runtime, clock: MovableClock
) -> None:
    plan = await client.post(
        "/v1/admin/plans",
        json={"code": "enterprise", "name": "Enterprise", "terms": {"max_activations": 3, "grace_days": 14}},
        headers=owner_headers,
    )
    assert plan.status_code == 201, plan.text
    issued = await issue(client, owner_headers, plan="enterprise", terms={"workspaces": {"enabled": True, "limit": 20}})
    assert issued["key"].startswith("LSK-")
    assert (issued["status"], issued["status_reason"]) == ("inactive", "NOT_ACTIVATED")
    assert issued["expires_at"] == "2027-12-31T00:00:00Z"
    assert issued["effective_terms"]["max_activations"] == 3
    assert issued["effective_terms"]["workspaces"] == {"enabled": True, "limit": 20}

    fetched = (await client.get(f"/v1/admin/licenses/{issued['id']}", headers=owner_headers)).json()
    assert "key" not in fetched
    assert fetched["key_hint"] == issued["key"][-4:]

    suspended = await client.post(
        f"/v1/admin/licenses/{issued['id']}/actions/suspend", json={"reason": "invoice overdue"}, headers=owner_headers
    )
    assert suspended.status_code == 200
    assert suspended.json()["status_reason"] == "SUSPENDED"

    document = await client.get(f"/v1/admin/licenses/{issued['id']}/document", headers=owner_headers)
    assert document.status_code == 200
    assert document.headers["content-type"].startswith("application/jwt")
    claims = Verifier(runtime.signer.keyring().root_public_key, clock=clock).verify(document.text).claims
    assert claims["license_id"] == issued["id"]
    assert claims["status_reason"] == "SUSPENDED"
    assert claims["grace_days"] == 14

    renewed = await client.post(
        f"/v1/admin/licenses/{issued['id']}/actions/renew", json={"expires_at": "2028-12-31"}, headers=owner_headers
    )
    assert renewed.json()["expires_at"] == "2028-12-31T00:00:00Z"

    rotated = await client.post(f"/v1/admin/licenses/{issued['id']}/actions/rotate-key", headers=owner_headers)
    assert rotated.json()["key"] != issued["key"]

    revoked = await client.post(f"/v1/admin/licenses/{issued['id']}/actions/revoke", headers=owner_headers)
    assert revoked.json()["status_reason"] == "REVOKED"
    again = await client.post(f"/v1/admin/licenses/{issued['id']}/actions/reinstate", headers=owner_headers)
    assert (again.status_code, again.json()["code"]) == (409, "license_revoked")

    audit = await client.get(
        "/v1/admin/audit-events", params={"target_id": issued["id"], "limit": 50}, headers=owner_headers
    )
    assert [e["action"] for e in reversed(audit.json()["items"])] == [
        "license.issued",
        "license.suspended",
        "license.renewed",
        "license.key_rotated",
        "license.revoked",
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"expires_at": "2027-12-31"}, "customer_id"),
        ({"customer_id": "not-a-uuid", "expires_at": "2027-12-31"}, "customer_id"),
        ({"expires_at": "2027-12-31T00:00:00"}, "expires_at"),
        ({"expires_at": "31/12/2027"}, "expires_at"),
        ({"expires_at": "9999-12-31"}, "expires_at"),
        ({"expires_at": "2027-12-31", "starts_at": "2028-01-01"}, "expires_at"),
        ({"expires_at": "2027-12-31", "terms": {"max_activations": -1}}, "terms.max_activations"),
        ({"expires_at": "2027-12-31", "terms": {"workspaces": {"limit": 10**30}}}, "terms.workspaces.limit"),
        ({"expires_at": "2027-12-31", "terms": {"sso": {"enforced_for_web": True}}}, "terms.sso"),
        ({"expires_at": "2027-12-31", "terms": {"entitlements": {"BAD NAME": 1}}}, "terms.entitlements"),
        ({"expires_at": "2027-12-31", "plan": "no-such-plan"}, "plan"),
        ({"expires_at": "2027-12-31", "unexpected": 1}, "unexpected"),
        ({"expires_at": "2027-12-31", "notes": "x" * 10_001}, "notes"),
    ],
)
async def test_bad_input_gets_a_problem_naming_the_field_and_writes_nothing(
    client: Client, owner_headers: dict[str, str], runtime: Runtime, body: dict[str, Any], field: str
) -> None:
    customer_id = await create_customer(client, owner_headers)
    if body.get("customer_id") != "not-a-uuid" and field != "customer_id":
        body = {"customer_id": customer_id, **body}
    audit_before = await count_rows(runtime, AuditEvent)
    response = await client.post("/v1/admin/licenses", json=body, headers=owner_headers)
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == response.status_code
    assert problem["code"] in {"validation_error", "plan_not_found"}
    assert any(error["field"].startswith(field) for error in problem["errors"]), problem
    assert await count_rows(runtime, License) == 0
    assert await count_rows(runtime, AuditEvent) == audit_before


async def test_malformed_json_and_unknown_routes_get_problems(client: Client, owner_headers: dict[str, str]) -> None:
    malformed = await client.post(
        "/v1/admin/customers", content=b'{"name": ', headers={**owner_headers, "content-type": "application/json"}
    )
    assert (malformed.status_code, malformed.json()["code"]) == (400, "validation_error")
    assert malformed.json()["errors"][0]["field"] == "body"
    missing = await client.get("/v1/admin/nothing-here", headers=owner_headers)
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    unknown = await client.get("/v1/admin/licenses/00000000-0000-4000-8000-000000000000", headers=owner_headers)
    assert (unknown.status_code, unknown.json()["code"]) == (404, "license_not_found")


async def test_oversized_body_is_refused_with_413(client: Client, owner_headers: dict[str, str]) -> None:
    response = await client.post(
        "/v1/admin/customers",
        content=b"{" + b" " * (2 * 1024 * 1024) + b"}",
        headers={**owner_headers, "content-type": "application/json"},
    )
    assert (response.status_code, response.json()["code"]) == (413, "request_too_large")


async def test_lists_paginate_with_totals(client: Client, owner_headers: dict[str, str]) -> None:
    customer_id = await create_customer(client, owner_headers)
    for _ in range(5):
        await issue(client, owner_headers, customer_id=customer_id)
    first = (await client.get("/v1/admin/licenses", params={"limit": 2}, headers=owner_headers)).json()
    last = (await client.get("/v1/admin/licenses", params={"limit": 2, "offset": 4}, headers=owner_headers)).json()
    assert (len(first["items"]), first["total"], len(last["items"])) == (2, 5, 1)
    bad = await client.get("/v1/admin/licenses", params={"limit": 0}, headers=owner_headers)
    assert (bad.status_code, bad.json()["errors"][0]["field"]) == (400, "limit")
    by_customer = await client.get("/v1/admin/licenses", params={"customer_id": customer_id}, headers=owner_headers)
    assert by_customer.json()["total"] == 5


async def test_duplicate_plan_code_and_customer_external_id_conflict(
    client: Client, owner_headers: dict[str, str]
) -> None:
    await create_customer(client, owner_headers, external_id="crm-42")
    dup = await client.post("/v1/admin/customers", json={"name": "B", "external_id": "crm-42"}, headers=owner_headers)
    assert (dup.status_code, dup.json()["code"], dup.json()["errors"][0]["field"]) == (
        409,
        "customer_exists",
        "external_id",
    )
    plan = {"code": "team", "name": "Team"}
    assert (await client.post("/v1/admin/plans", json=plan, headers=owner_headers)).status_code == 201
    again = await client.post("/v1/admin/plans", json=plan, headers=owner_headers)
    assert (again.status_code, again.json()["code"]) == (409, "plan_exists")


async def test_tokens_are_shown_once_and_listed_without_secrets(client: Client, owner_headers: dict[str, str]) -> None:
    created = await client.post("/v1/admin/tokens", json={"name": "ci", "role": "issuer"}, headers=owner_headers)
    assert created.status_code == 201
    secret = created.json()["token"]
    listing = await client.get("/v1/admin/tokens", headers=owner_headers)
    assert secret not in listing.text
    assert any(t["token_hint"] == secret[-4:] for t in listing.json())
    issuer = {"Authorization": f"Bearer {secret}"}
    assert (await client.get("/v1/admin/licenses", headers=issuer)).status_code == 200
    assert (await client.get("/v1/admin/tokens", headers=issuer)).status_code == 403


@pytest.fixture
def keys_dir(own_keys_dir: Path) -> Path:
    """Key rotation here must not touch the session's shared keyring."""
    return own_keys_dir


async def test_key_rotation_through_the_api_keeps_old_documents_verifiable(
    client: Client, owner_headers: dict[str, str], runtime: Runtime, clock: MovableClock
) -> None:
    """The key host makes the bundle and the revocation list; the owner imports both over the API."""
    issued = await issue(client, owner_headers)
    old_document = (await client.get(f"/v1/admin/licenses/{issued['id']}/document", headers=owner_headers)).text
    key_host = root_of(runtime.signer.store)
    bundle = key_host.issue_key(bundle_passphrase=runtime.signer.store.passphrase)
    imported = await client.post(
        "/v1/admin/keys/import", json={"bundle": bundle.to_json().decode()}, headers=owner_headers
    )
    assert imported.status_code == 201
    new_kid = imported.json()["kid"]
    assert (new_kid, imported.json()["signer"]) == (bundle.kid, True)
    new_document = (await client.get(f"/v1/admin/licenses/{issued['id']}/document", headers=owner_headers)).text
    verifier = Verifier(runtime.signer.keyring().root_public_key, clock=clock)
    assert verifier.verify(new_document).kid == new_kid
    old_kid = verifier.verify(old_document).kid
    jwks = (await client.get("/.well-known/jwks.json")).json()
    assert {k["kid"] for k in jwks["keys"]} == {old_kid, new_kid}
    retired = await client.post(
        "/v1/admin/keys/revocations", json={"revocations": key_host.retire(old_kid)}, headers=owner_headers
    )
    assert retired.json() == {"sequence": 1, "retired": [old_kid]}
    listed = {k["kid"]: k["retired_at"] for k in (await client.get("/v1/admin/keys", headers=owner_headers)).json()}
    assert listed[old_kid] is not None
    jwks = (await client.get("/.well-known/jwks.json")).json()
    assert {k["kid"] for k in jwks["keys"]} == {new_kid}
    revocations = (await client.get("/.well-known/license-key-revocations.jws")).text
    refusing = verifier.with_revocations(revocations)
    assert refusing.verify(new_document).kid == new_kid
    with pytest.raises(Exception, match="KEY_RETIRED"):
        refusing.verify(old_document)
    foreign = await client.post("/v1/admin/keys/revocations", json={"revocations": "a.b.c"}, headers=owner_headers)
    assert (foreign.status_code, foreign.json()["code"]) == (400, "invalid_revocations")
    bad_bundle = await client.post("/v1/admin/keys/import", json={"bundle": "{}"}, headers=owner_headers)
    assert (bad_bundle.status_code, bad_bundle.json()["code"]) == (400, "invalid_key_bundle")


async def test_a_keyring_read_failure_keeps_serving_with_the_last_good_keyring(
    client: Client, owner_headers: dict[str, str], runtime: Runtime
) -> None:
    issued = await issue(client, owner_headers)
    assert (await client.get("/health/ready")).status_code == 200
    (runtime.settings.keys_dir / "keyring.json").write_text("not json")
    document = await client.get(f"/v1/admin/licenses/{issued['id']}/document", headers=owner_headers)
    assert document.status_code == 200
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"]["signing_key"] == "ok"
    assert "last good keyring in use" in ready.json()["checks"]["keyring"]


async def test_health_reports_ready_and_live(client: Client) -> None:
    assert (await client.get("/health/live")).json()["status"] == "ok"
    ready = await client.get("/health/ready")
    assert (ready.status_code, ready.json()["checks"]) == (200, {"database": "ok", "signing_key": "ok", "jobs": "ok"})
