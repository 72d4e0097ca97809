"""Updating a customer over the admin API: only what is sent changes, null clears, conflicts and bad input are
problems that write nothing, every change is audited, and the customer's signed documents carry the new name at
the next poll (on SQLite and PostgreSQL, poll cache on)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from license_server.auth.models import AuditEvent
from license_server.config import Settings
from license_server.runtime import Runtime
from license_server.verifier import Verifier
from tests.conftest import LicenseFactory, MovableClock, backend_settings
from tests.deployments.conftest import activate, bearer


@pytest.fixture
def settings(backend: str, tmp_path: Path, keys_dir: Path, request: pytest.FixtureRequest) -> Settings:
    """The poll cache on, as served: the update must reach it, not wait for it to expire."""
    return backend_settings(backend, tmp_path, keys_dir, request, poll_cache_seconds=60)


async def test_only_what_is_sent_changes_and_null_clears(
    client: httpx.AsyncClient, owner_headers: dict[str, str]
) -> None:
    created = await client.post(
        "/v1/admin/customers",
        json={"name": "Acme", "contact_email": "ops@acme.example", "external_id": "crm-1"},
        headers=owner_headers,
    )
    customer = created.json()
    url = f"/v1/admin/customers/{customer['id']}"

    renamed = await client.patch(url, json={"name": "Acme Corp"}, headers=owner_headers)
    assert renamed.status_code == 200, renamed.text
    assert (renamed.json()["name"], renamed.json()["contact_email"], renamed.json()["external_id"]) == (
        "Acme Corp",
        "ops@acme.example",
        "crm-1",
    )
    cleared = await client.patch(url, json={"contact_email": None, "external_id": None}, headers=owner_headers)
    assert (cleared.json()["contact_email"], cleared.json()["external_id"]) == (None, None)
    assert (await client.get(url, headers=owner_headers)).json() == cleared.json()


async def test_conflicts_and_bad_input_are_problems_that_write_nothing(
    client: httpx.AsyncClient, owner_headers: dict[str, str], runtime: Runtime
) -> None:
    first = (
        await client.post("/v1/admin/customers", json={"name": "A", "external_id": "crm-1"}, headers=owner_headers)
    ).json()
    second = (await client.post("/v1/admin/customers", json={"name": "B"}, headers=owner_headers)).json()
    url = f"/v1/admin/customers/{second['id']}"
    cases = [
        ({"external_id": "crm-1"}, 409, "customer_exists", "external_id"),
        ({"name": None}, 400, "validation_error", "name"),
        ({"name": ""}, 400, "validation_error", "name"),
        ({"contact_email": "not an address"}, 400, "validation_error", "contact_email"),
        ({"colour": "red"}, 400, "validation_error", "colour"),
    ]
    for body, status, code, field in cases:
        refused = await client.patch(url, json=body, headers=owner_headers)
        assert refused.status_code == status, (body, refused.text)
        assert refused.json()["code"] == code, body
        assert field in [e["field"] for e in refused.json()["errors"]], (body, refused.json())
    assert (await client.get(url, headers=owner_headers)).json() == second
    missing = await client.patch(f"/v1/admin/customers/{first['id'][:-1]}0", json={"name": "X"}, headers=owner_headers)
    assert missing.status_code == 404
    async with runtime.session_factory() as db:
        actions = list(await db.scalars(select(AuditEvent.action).where(AuditEvent.target_id == second["id"])))
    assert actions == ["customer.created"]


async def test_a_rename_is_audited_and_signed_into_the_next_poll(
    client: httpx.AsyncClient,
    owner_headers: dict[str, str],
    make_license: LicenseFactory,
    runtime: Runtime,
    clock: MovableClock,
) -> None:
    issued = await make_license()
    token = (await activate(client, issued)).json()["deployment_token"]
    etag = (await client.get("/v1/license", headers=bearer(token))).headers["etag"]
    customer_id = issued.view.customer.id

    renamed = await client.patch(
        f"/v1/admin/customers/{customer_id}",
        json={"name": "Renamed Ltd", "external_id": "crm-9"},
        headers=owner_headers,
    )
    assert renamed.status_code == 200, renamed.text
    polled = await client.get("/v1/license", headers={**bearer(token), "If-None-Match": etag})
    assert polled.status_code == 200  # not 304: the document changed, cache or not
    claims = Verifier(runtime.signer.keyring().root_public_key, clock=clock).verify(polled.text).claims
    assert (claims["customer"]["name"], claims["customer"]["external_id"]) == ("Renamed Ltd", "crm-9")
    async with runtime.session_factory() as db:
        audit = (await db.scalars(select(AuditEvent).where(AuditEvent.action == "customer.updated"))).one()
    assert audit.detail == {"name": "Renamed Ltd", "external_id": "crm-9"}
    # nothing sent that differs: no change, no audit line
    again = await client.patch(
        f"/v1/admin/customers/{customer_id}", json={"name": "Renamed Ltd"}, headers=owner_headers
    )
    assert again.status_code == 200
    async with runtime.session_factory() as db:
        count = len(list(await db.scalars(select(AuditEvent).where(AuditEvent.action == "customer.updated"))))
    assert count == 1
