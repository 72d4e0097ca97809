"""Activation, polling, usage and deactivation through the deployment API, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
from sqlalchemy import select

from license_server.config import Settings
from license_server.db.session import create_engine, create_session_factory
from license_server.deployments import service
from license_server.deployments.jobs import flush_check_ins
from license_server.deployments.models import Activation
from license_server.events.models import Event
from license_server.licenses import service as licenses
from license_server.licenses.models import License
from license_server.licenses.terms import LicenseTerms
from license_server.runtime import Runtime
from license_server.verifier import Verifier
from tests.conftest import LicenseFactory, MovableClock
from tests.deployments.conftest import activate, bearer

DAY = timedelta(days=1)


async def event_types(runtime: Runtime) -> list[str]:
    async with runtime.session_factory() as db:
        return list((await db.scalars(select(Event.type).order_by(Event.id))).all())


async def test_activation_returns_a_token_once_and_a_signed_active_document(
    client: httpx.AsyncClient, make_license: LicenseFactory, runtime: Runtime, clock: MovableClock
) -> None:
    issued = await make_license()
    response = await activate(client, issued, hostname="node-a", product_version="1.4.2")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["deployment_token"].startswith("lsdt_")
    claims = Verifier(runtime.signer.keyring().root_public_key, clock=clock).verify(body["document"]).claims
    assert (claims["status"], claims["status_reason"]) == ("active", "ACTIVE")
    again = await activate(client, issued)
    assert again.status_code == 200
    assert again.json()["activation_id"] == body["activation_id"]
    assert again.json()["deployment_token"] is None
    assert await event_types(runtime) == ["license.activated", "activation.created"]


async def test_reissued_token_replaces_the_old_one(client: httpx.AsyncClient, make_license: LicenseFactory) -> None:
    issued = await make_license()
    first = (await activate(client, issued)).json()["deployment_token"]
    second = (await activate(client, issued, reissue_token=True)).json()["deployment_token"]
    assert second
    assert second != first
    assert (await client.get("/v1/license", headers=bearer(second))).status_code == 200
    old = await client.get("/v1/license", headers=bearer(first))
    assert (old.status_code, old.json()["code"]) == (401, "invalid_deployment_token")


async def test_activations_beyond_the_seats_get_409(client: httpx.AsyncClient, make_license: LicenseFactory) -> None:
    issued = await make_license(terms=LicenseTerms.model_validate({"max_activations": 2}))
    assert [(await activate(client, issued, f"host-{i}")).status_code for i in range(2)] == [201, 201]
    refused = await activate(client, issued, "host-3")
    assert (refused.status_code, refused.json()["code"]) == (409, "too_many_activations")


async def test_unusable_licenses_are_refused_with_their_code(
    client: httpx.AsyncClient, make_license: LicenseFactory, runtime: Runtime, clock: MovableClock
) -> None:
    from license_server.auth.tokens import cli_actor

    actor = cli_actor()
    revoked, suspended = await make_license(), await make_license()
    future = await make_license(starts_at=clock() + 5 * DAY)
    expired = await make_license(starts_at=clock() - 30 * DAY, expires_at=clock() - DAY)
    maintained = await make_license(
        starts_at=clock() - 30 * DAY,
        expires_at=clock() - DAY,
        terms=LicenseTerms.model_validate({"enforcement": "maintain"}),
    )
    async with runtime.session_factory() as db:
        await licenses.revoke_license(db, actor=actor, license_id=revoked.view.license.id, clock=clock)
        await licenses.suspend_license(db, actor=actor, license_id=suspended.view.license.id, clock=clock)
    for issued, code in [
        (revoked, "license_revoked"),
        (suspended, "license_suspended"),
        (future, "license_not_started"),
        (expired, "license_expired"),
    ]:
        response = await activate(client, issued)
        assert (response.status_code, response.json()["code"]) == (403, code)
    assert (await activate(client, maintained)).status_code == 201


async def test_unknown_and_malformed_keys_get_the_same_answer(client: httpx.AsyncClient) -> None:
    unknown = await activate(client, "LSK-0000-0000-0000-0000-0000-0000-0000-0000")
    malformed = await activate(client, "not-even-a-key")
    assert unknown.status_code == malformed.status_code == 404

    def answer(response: httpx.Response) -> dict[str, object]:
        return {k: v for k, v in response.json().items() if k != "request_id"}  # each request has its own id

    assert answer(unknown) == answer(malformed)


async def test_polling_returns_304_until_the_document_changes(
    client: httpx.AsyncClient, make_license: LicenseFactory, runtime: Runtime, clock: MovableClock
) -> None:
    from license_server.auth.tokens import cli_actor

    issued = await make_license()
    token = (await activate(client, issued)).json()["deployment_token"]
    first = await client.get("/v1/license", headers=bearer(token))
    assert first.status_code == 200
    etag = first.headers["etag"]
    unchanged = await client.get("/v1/license", headers={**bearer(token), "If-None-Match": etag})
    assert (unchanged.status_code, unchanged.content) == (304, b"")
    async with runtime.session_factory() as db:
        await licenses.suspend_license(db, actor=cli_actor(), license_id=issued.view.license.id, clock=clock)
    changed = await client.get("/v1/license", headers={**bearer(token), "If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    claims = Verifier(runtime.signer.keyring().root_public_key, clock=clock).verify(changed.text).claims
    assert claims["status_reason"] == "SUSPENDED"


async def test_document_is_resigned_when_half_its_ttl_has_passed(
    client: httpx.AsyncClient, make_license: LicenseFactory, runtime: Runtime, clock: MovableClock
) -> None:
    token = (await activate(client, await make_license())).json()["deployment_token"]
    etag = (await client.get("/v1/license", headers=bearer(token))).headers["etag"]
    clock.advance(runtime.settings.document_ttl / 2 - timedelta(seconds=10))
    assert (await client.get("/v1/license", headers={**bearer(token), "If-None-Match": etag})).status_code == 304
    clock.advance(timedelta(seconds=20))
    fresh = await client.get("/v1/license", headers={**bearer(token), "If-None-Match": etag})
    assert fresh.status_code == 200
    claims = Verifier(runtime.signer.keyring().root_public_key, clock=clock).verify(fresh.text).claims
    assert claims["exp"] - clock().timestamp() > runtime.settings.document_ttl.total_seconds() * 0.99


async def test_polls_without_a_valid_token_are_refused(client: httpx.AsyncClient) -> None:
    for headers in ({}, bearer("lsdt_unknown"), bearer("lsat_admin-token-is-not-a-deployment-token")):
        response = await client.get("/v1/license", headers=headers)
        assert (response.status_code, response.json()["code"]) == (401, "invalid_deployment_token")


async def test_usage_shows_beside_limits_and_over_limit_raises_a_flag_and_one_event(
    client: httpx.AsyncClient, make_license: LicenseFactory, runtime: Runtime, clock: MovableClock
) -> None:
    issued = await make_license(
        terms=LicenseTerms.model_validate(
            {"workspaces": {"enabled": True, "limit": 2}, "members_per_workspace": {"enabled": True, "limit": 10}}
        )
    )
    token = (await activate(client, issued)).json()["deployment_token"]
    report = {
        "measured_at": clock().isoformat(),
        "seats_used": 7,
        "idempotency_key": "r1",
        "workspaces": [{"id": "w1", "members": 3}, {"id": "w2", "members": 12}, {"id": "w3", "members": 1}],
    }
    accepted = await client.post("/v1/usage", json=report, headers=bearer(token))
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["over_limit"] == ["workspaces", "members_per_workspace"]
    duplicate = await client.post("/v1/usage", json=report, headers=bearer(token))
    assert duplicate.json()["duplicate"] is True
    assert duplicate.json()["report_id"] == accepted.json()["report_id"]
    again = await client.post("/v1/usage", json={**report, "idempotency_key": "r2"}, headers=bearer(token))
    assert again.json()["duplicate"] is False
    document = (await client.get("/v1/license", headers=bearer(token))).text
    claims = Verifier(runtime.signer.keyring().root_public_key, clock=clock).verify(document).claims
    assert claims["limits"]["workspaces"] == {"enabled": True, "limit": 2, "used": 3, "over_limit": True}
    assert claims["limits"]["members_per_workspace"]["used"] == 12
    assert claims["over_limit"] is True
    assert (await event_types(runtime)).count("usage.over_limit") == 1


async def test_bad_usage_reports_are_4xx_and_store_nothing(
    client: httpx.AsyncClient, make_license: LicenseFactory, clock: MovableClock
) -> None:
    token = (await activate(client, await make_license())).json()["deployment_token"]
    good = {"measured_at": clock().isoformat(), "idempotency_key": "k", "workspaces": []}
    for bad, field in [
        ({**good, "seats_used": -1}, "seats_used"),
        ({**good, "seats_used": "many"}, "seats_used"),
        ({**good, "workspaces": [{"id": "a", "members": 1}, {"id": "a", "members": 2}]}, "workspaces"),
        ({**good, "measured_at": (clock() + DAY).isoformat()}, "measured_at"),
        ({**good, "workspaces": [{"id": "a", "members": 10**40}]}, "workspaces"),
        ({"measured_at": clock().isoformat()}, "idempotency_key"),
    ]:
        response = await client.post("/v1/usage", json=bad, headers=bearer(token))
        assert response.status_code == 400, (bad, response.text)
        assert any(e["field"].startswith(field) for e in response.json()["errors"]), response.json()
    stored = await client.post("/v1/usage", json=good, headers=bearer(token))
    assert stored.json()["duplicate"] is False  # nothing above was stored under this key


async def test_a_deployment_deactivates_itself_and_frees_its_seat(
    client: httpx.AsyncClient, make_license: LicenseFactory, runtime: Runtime, owner_headers: dict[str, str]
) -> None:
    issued = await make_license(terms=LicenseTerms.model_validate({"max_activations": 1}))
    first = (await activate(client, issued, "a")).json()
    other = await make_license()
    stranger = (await activate(client, other, "b")).json()["deployment_token"]
    refused = await client.delete(f"/v1/activations/{first['activation_id']}", headers=bearer(stranger))
    assert refused.status_code == 403
    freed = await client.delete(f"/v1/activations/{first['activation_id']}", headers=bearer(first["deployment_token"]))
    assert freed.status_code == 200
    assert (await client.get("/v1/license", headers=bearer(first["deployment_token"]))).status_code == 401
    second = await activate(client, issued, "c")
    assert second.status_code == 201
    by_admin = await client.delete(f"/v1/activations/{second.json()['activation_id']}", headers=owner_headers)
    assert by_admin.status_code == 200
    listing = await client.get(f"/v1/admin/licenses/{issued.view.license.id}/activations", headers=owner_headers)
    assert sorted((a["fingerprint"], a["deactivated_at"] is not None) for a in listing.json()) == [
        ("a", True),
        ("c", True),
    ]
    assert (await event_types(runtime)).count("activation.deactivated") == 2


async def test_admin_sees_activations_with_latest_usage(
    client: httpx.AsyncClient, make_license: LicenseFactory, owner_headers: dict[str, str], clock: MovableClock
) -> None:
    issued = await make_license(terms=LicenseTerms.model_validate({"max_activations": 3}))
    token = (await activate(client, issued, "node-1", hostname="h1", product_version="2.0")).json()["deployment_token"]
    await client.post(
        "/v1/usage",
        headers=bearer(token),
        json={
            "measured_at": clock().isoformat(),
            "idempotency_key": "x",
            "seats_used": 4,
            "workspaces": [{"id": "w", "members": 2}],
        },
    )
    rows = (await client.get(f"/v1/admin/licenses/{issued.view.license.id}/activations", headers=owner_headers)).json()
    assert rows[0]["hostname"] == "h1"
    assert rows[0]["product_version"] == "2.0"
    assert rows[0]["latest_usage"]["seats_used"] == 4
    usage = await client.get(f"/v1/admin/licenses/{issued.view.license.id}/usage", headers=owner_headers)
    assert usage.json() == {"workspaces": 1, "members_per_workspace": 2, "licensed_seats": 4}


async def test_a_deactivated_activations_late_check_in_refreshes_neither_it_nor_its_license(
    client: httpx.AsyncClient, make_license: LicenseFactory, runtime: Runtime, clock: MovableClock
) -> None:
    """Polls buffered before a deactivation and flushed after it are no check-in; a live neighbour's still is."""
    issued = await make_license(terms=LicenseTerms.model_validate({"max_activations": 2}))
    activated_at = clock()
    leaving = (await activate(client, issued, "leaving")).json()
    staying = (await activate(client, issued, "staying")).json()
    clock.advance(timedelta(hours=6))
    assert (await client.get("/v1/license", headers=bearer(staying["deployment_token"]))).status_code == 200
    staying_seen = clock()
    clock.advance(timedelta(hours=6))
    assert (await client.get("/v1/license", headers=bearer(leaving["deployment_token"]))).status_code == 200
    await client.delete(f"/v1/activations/{leaving['activation_id']}", headers=bearer(leaving["deployment_token"]))
    # What the poll path answers a deactivated token is unchanged: 401.
    assert (await client.get("/v1/license", headers=bearer(leaving["deployment_token"]))).status_code == 401
    assert await flush_check_ins(runtime) == 2
    async with runtime.session_factory() as db:
        seen = {a.fingerprint: a.last_seen_at for a in await db.scalars(select(Activation))}
        license = await db.get(License, issued.view.license.id)
    assert seen == {"leaving": activated_at, "staying": staying_seen}
    assert license is not None
    assert license.last_check_in_at == staying_seen
    assert license.heartbeat_deadline == staying_seen + license.effective_terms(None).heartbeat_window


async def test_a_replica_still_answering_a_deactivated_token_from_its_cache_records_no_check_in(
    client: httpx.AsyncClient,
    make_license: LicenseFactory,
    runtime: Runtime,
    settings: Settings,
    clock: MovableClock,
    owner_headers: dict[str, str],
) -> None:
    """Another replica serves a deactivated token from its cache for up to poll_cache_seconds (bounded staleness, as
    today); those polls are not check-ins: neither the activation nor the license is refreshed."""
    issued = await make_license()
    activated_at = clock()
    activation = (await activate(client, issued, "host-1")).json()
    engine = create_engine(settings)
    replica = Runtime(
        settings=settings.model_copy(update={"poll_cache_seconds": 60}),
        signer=runtime.signer,
        engine=engine,
        session_factory=create_session_factory(engine),
        clock=clock,
    )
    try:
        assert (await service.poll(replica, token=activation["deployment_token"], if_none_match=None)).document
        replica.poll_state.check_ins.drain()  # that poll was before the deactivation: not what this test is about
        await client.delete(f"/v1/activations/{activation['activation_id']}", headers=owner_headers)
        clock.advance(timedelta(hours=1))
        late = await service.poll(replica, token=activation["deployment_token"], if_none_match=None)
        assert late.document.token  # still answered from the replica's cache, within its staleness bound
        assert await flush_check_ins(replica) == 1
    finally:
        await replica.close()
    async with runtime.session_factory() as db:
        stored = await db.get(Activation, uuid.UUID(activation["activation_id"]))
        license = await db.get(License, issued.view.license.id)
    assert stored is not None
    assert license is not None
    assert (stored.last_seen_at, license.last_check_in_at) == (activated_at, activated_at)


async def test_current_usage_is_the_latest_measurement_not_the_latest_received_report(
    client: httpx.AsyncClient,
    make_license: LicenseFactory,
    runtime: Runtime,
    owner_headers: dict[str, str],
    clock: MovableClock,
) -> None:
    """A late (retried, delayed) report of an older measurement is stored but does not become the current usage:
    not in the admin views, not in the document's `used`, not in the inner API."""
    issued = await make_license(
        terms=LicenseTerms.model_validate(
            {
                "workspaces": {"enabled": True, "limit": 5},
                "licensed_seats": {"enabled": True, "limit": 50},
                "max_activations": 2,  # the deployment and the Dify install behind the inner-API credential
            }
        )
    )
    license_id = issued.view.license.id
    token = (await activate(client, issued, "node-1")).json()["deployment_token"]
    newer = {
        "measured_at": clock().isoformat(),
        "idempotency_key": "newer",
        "seats_used": 9,
        "workspaces": [{"id": "ws-a", "members": 3}, {"id": "ws-b", "members": 1}, {"id": "ws-c", "members": 1}],
    }
    older = {
        "measured_at": (clock() - timedelta(hours=1)).isoformat(),
        "idempotency_key": "older",
        "seats_used": 2,
        "workspaces": [{"id": "ws-a", "members": 1}],
    }
    assert (await client.post("/v1/usage", json=newer, headers=bearer(token))).status_code == 200
    late = await client.post("/v1/usage", json=older, headers=bearer(token))
    assert late.status_code == 200, late.text
    current = {"workspaces": 3, "members_per_workspace": 3, "licensed_seats": 9}
    assert late.json()["usage"] == current
    assert (await client.get(f"/v1/admin/licenses/{license_id}/usage", headers=owner_headers)).json() == current
    rows = (await client.get(f"/v1/admin/licenses/{license_id}/activations", headers=owner_headers)).json()
    assert (rows[0]["latest_usage"]["seats_used"], rows[0]["latest_usage"]["measured_at"]) == (9, clock().isoformat())
    document = (await client.get("/v1/license", headers=bearer(token))).text
    claims = Verifier(runtime.signer.keyring().root_public_key, clock=clock).verify(document).claims
    assert (claims["limits"]["workspaces"]["used"], claims["limits"]["licensed_seats"]["used"]) == (3, 9)
    secret = await client.post(f"/v1/admin/licenses/{license_id}/inner-api/credentials", json={}, headers=owner_headers)
    dify = {"Enterprise-Api-Secret-Key": secret.json()["secret"]}
    info = (await client.get("/inner/api/info", headers=dify)).json()["License"]
    assert (info["workspaces"]["used"], info["licensedSeats"]["used"]) == (3, 9)
    workspace = (await client.get("/inner/api/workspace/ws-a/info", headers=dify)).json()
    assert workspace["WorkspaceMembers"]["used"] == 3
