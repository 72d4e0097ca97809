"""Webhook signing secrets are encrypted at rest: the database holds none of them, only values sealed under a key
from keys/, each bound to its own endpoint; deliveries are still signed with the secret the admin was shown."""

from __future__ import annotations

import secrets
import uuid

import httpx
import pytest
from sqlalchemy import select, text, update

from license_server.errors import SecretUnreadable
from license_server.events.models import WebhookEndpoint
from license_server.events.service import EventType
from license_server.events.webhooks import fan_out
from license_server.runtime import Runtime
from license_server.signing.encryption import WEBHOOK_SECRETS, SecretBox
from tests.events.conftest import Receiver, deliver, delivery_rows, emit, verify


async def raw_endpoint_rows(runtime: Runtime) -> list[str]:
    async with runtime.engine.connect() as connection:
        rows = (await connection.execute(text("SELECT * FROM webhook_endpoints"))).all()
    return [" ".join(str(value) for value in row) for row in rows]


async def test_no_secret_is_stored_in_the_clear_and_deliveries_are_signed_with_it(
    runtime: Runtime, client: httpx.AsyncClient, owner_headers: dict[str, str], receiver: Receiver
) -> None:
    created = await client.post("/v1/admin/webhooks/", json={"url": receiver.url("/sealed")}, headers=owner_headers)
    endpoint_id = created.json()["id"]
    first = created.json()["secret"]
    rotated = await client.post(f"/v1/admin/webhooks/{endpoint_id}/rotate-secret", headers=owner_headers)
    second = rotated.json()["secret"]

    [row] = await raw_endpoint_rows(runtime)
    for secret in (first, second):
        assert secret not in row
        assert secret.removeprefix("whsec_") not in row

    await emit(runtime, EventType.LICENSE_REVOKED)
    async with runtime.session_factory() as session:
        await fan_out(session, clock=runtime.clock)
    async with httpx.AsyncClient(trust_env=False) as http:
        assert await deliver(runtime, http) == 1
    [request] = receiver.to("/sealed")
    assert verify(second, request)["type"] == "license.revoked"


async def test_a_sealed_secret_copied_onto_another_endpoint_is_not_used(
    runtime: Runtime, client: httpx.AsyncClient, owner_headers: dict[str, str], receiver: Receiver
) -> None:
    donor = (await client.post("/v1/admin/webhooks/", json={"url": receiver.url("/a")}, headers=owner_headers)).json()
    other = (await client.post("/v1/admin/webhooks/", json={"url": receiver.url("/b")}, headers=owner_headers)).json()
    donor_id, other_id = uuid.UUID(donor["id"]), uuid.UUID(other["id"])
    async with runtime.session_factory() as session:
        sealed = await session.scalar(select(WebhookEndpoint.encrypted_secret).where(WebhookEndpoint.id == donor_id))
        await session.execute(
            update(WebhookEndpoint).where(WebhookEndpoint.id == other_id).values(encrypted_secret=sealed)
        )
        await session.commit()
    await emit(runtime, EventType.LICENSE_SUSPENDED)
    async with runtime.session_factory() as session:
        await fan_out(session, clock=runtime.clock)

    async with httpx.AsyncClient(trust_env=False) as http:
        assert await deliver(runtime, http) == 2

    assert len(receiver.to("/a")) == 1
    assert receiver.to("/b") == []  # never signed with a secret that is not its own
    failed = {row.endpoint_id: row for row in await delivery_rows(runtime)}
    error = failed[other_id].last_error or ""
    assert error == "not sent: the endpoint's signing secret cannot be decrypted with this server's keys"


def test_sealed_values_open_only_with_the_same_key_and_binding() -> None:
    key = secrets.token_bytes(32)
    box = SecretBox(key, purpose=WEBHOOK_SECRETS)
    sealed = box.seal("whsec_abc", bound_to="row-1")
    assert sealed != box.seal("whsec_abc", bound_to="row-1")  # a fresh nonce each time
    assert box.open(sealed, bound_to="row-1") == "whsec_abc"
    for opener, binding in [
        (box, "row-2"),
        (SecretBox(secrets.token_bytes(32), purpose=WEBHOOK_SECRETS), "row-1"),
        (SecretBox(key, purpose="something-else"), "row-1"),
    ]:
        with pytest.raises(SecretUnreadable):
            opener.open(sealed, bound_to=binding)
    for damaged in (sealed[:-2], "v2:" + sealed[3:], "whsec_abc", ""):
        with pytest.raises(SecretUnreadable):
            box.open(damaged, bound_to="row-1")
