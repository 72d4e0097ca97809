"""The scheduled webhook job end to end: a license action's event reaches a real receiver, signed, once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx

from license_server.auth.tokens import Actor
from license_server.events.jobs import run_webhook_jobs
from license_server.licenses import service as licenses
from license_server.runtime import Runtime
from tests.conftest import LicenseFactory, MovableClock
from tests.events.conftest import Receiver, delivery_rows, make_endpoint, verify


async def test_run_webhook_jobs_delivers_a_license_action_once(
    runtime: Runtime, actor: Actor, receiver: Receiver, make_license: LicenseFactory
) -> None:
    created = await make_endpoint(runtime, actor, receiver.url("/jobs"), ["license.revoked"])
    issued = await make_license()
    license_id = issued.view.license.id
    async with runtime.session_factory() as session:
        await licenses.revoke_license(
            session, actor=actor, license_id=license_id, reason="chargeback", clock=runtime.clock
        )

    assert await run_webhook_jobs(runtime) == 1  # with a client of its own
    assert await run_webhook_jobs(runtime) == 0

    [request] = receiver.to("/jobs")
    payload = verify(created.secret, request)
    assert payload["type"] == "license.revoked"
    assert payload["data"]["license_id"] == str(license_id)
    assert payload["data"]["reason"] == "chargeback"
    assert request.headers["user-agent"].startswith("license-server-webhooks/")


async def test_run_webhook_jobs_retries_and_is_safe_on_several_replicas(
    runtime: Runtime,
    actor: Actor,
    receiver: Receiver,
    make_license: LicenseFactory,
    http_client: httpx.AsyncClient,
    clock: MovableClock,
) -> None:
    await make_endpoint(runtime, actor, receiver.url("/replicas"))
    receiver.fail("/replicas", 2)
    issued = await make_license()
    async with runtime.session_factory() as session:
        await licenses.suspend_license(session, actor=actor, license_id=issued.view.license.id, clock=runtime.clock)

    for _ in range(3):  # three ticks of three replicas each
        await asyncio.gather(*(run_webhook_jobs(runtime, http_client=http_client) for _ in range(3)))
        clock.advance(timedelta(seconds=10))  # past either backoff (at most 5 s, then 10 s)

    [row] = await delivery_rows(runtime)
    assert (row.state, row.attempts) == ("succeeded", 3)
    assert [r.status for r in receiver.to("/replicas")] == [500, 500, 204]
