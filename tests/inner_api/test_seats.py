"""Seats through the inner API: each credential is one Dify install holding one activation of the license, counted
against ``max_activations`` with the deployments' own activations, under real concurrency on both databases."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select

from license_server.auth.tokens import Actor
from license_server.deployments.jobs import flush_check_ins
from license_server.deployments.models import Activation
from license_server.errors import InnerApiSeatsInUse
from license_server.events.models import Event
from license_server.inner_api import service
from license_server.inner_api.store import SqlInnerApiStore, VendorInnerApiRecords, install_fingerprint
from license_server.licenses.terms import LicenseTerms
from license_server.runtime import Runtime
from tests.conftest import LicenseFactory, MovableClock
from tests.deployments.conftest import activate

SECRET_HEADER = "Enterprise-Api-Secret-Key"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def seats(count: int) -> LicenseTerms:
    return LicenseTerms.model_validate({"max_activations": count})


async def credentials(runtime: Runtime, actor: Actor, license_id: uuid.UUID, count: int) -> list[str]:
    made = []
    for n in range(count):
        async with runtime.session_factory() as db:
            records = VendorInnerApiRecords(
                db, license_id=license_id, hasher=runtime.hasher, actor=actor, clock=runtime.clock
            )
            created = await service.create_credential(records, label=f"dify-{n}")
        made.append(created.secret)
    return made


async def live_activations(runtime: Runtime, license_id: uuid.UUID) -> list[Activation]:
    async with runtime.session_factory() as db:
        rows = await db.scalars(
            select(Activation).where(Activation.license_id == license_id, Activation.deactivated_at.is_(None))
        )
        return list(rows.all())


async def test_concurrent_first_uses_from_distinct_installs_take_exactly_the_seats(
    runtime: Runtime, actor: Actor, make_license: LicenseFactory
) -> None:
    """Eight Dify installs (eight credentials) call at once on a 2-seat license: exactly two are served."""
    license_id = (await make_license(terms=seats(2))).view.license.id
    secrets = await credentials(runtime, actor, license_id, 8)
    store = SqlInnerApiStore(runtime)
    results = await asyncio.gather(*(store.authenticate(secret) for secret in secrets), return_exceptions=True)
    served = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(served) == 2
    assert len(refused) == 6
    assert all(isinstance(r, InnerApiSeatsInUse) for r in refused)
    live = await live_activations(runtime, license_id)
    assert sorted(a.id for a in live) == sorted(c.activation_id for c in served if c.activation_id)
    assert {a.fingerprint for a in live} == {install_fingerprint(c.credential_id) for c in served}
    async with runtime.session_factory() as db:
        activated = await db.scalar(
            select(func.count()).where(Event.license_id == license_id, Event.type == "license.activated")
        )
    assert activated == 1
    # The two installs keep their seats on every later call; the others stay refused.
    again = await asyncio.gather(*(store.authenticate(secret) for secret in secrets), return_exceptions=True)
    assert [not isinstance(r, BaseException) for r in again] == [not isinstance(r, BaseException) for r in results]
    assert len(await live_activations(runtime, license_id)) == 2


async def test_deployments_and_dify_installs_share_the_seats(
    client: httpx.AsyncClient, runtime: Runtime, actor: Actor, make_license: LicenseFactory
) -> None:
    """A 1-seat license held by a deployment: a Dify install gets 403 too_many_activations with the message Dify
    reads, and takes the seat once the deployment frees it."""
    issued = await make_license(terms=seats(1))
    (secret,) = await credentials(runtime, actor, issued.view.license.id, 1)
    token = (await activate(client, issued)).json()["deployment_token"]
    refused = await client.get("/inner/api/info", headers={SECRET_HEADER: secret})
    assert refused.status_code == 403
    assert refused.json()["code"] == "too_many_activations"
    assert "seat" in refused.json()["message"]
    assert (await activate(client, issued, fingerprint="host-2")).status_code == 409  # and the other way round
    mine = (await client.get("/v1/license", headers={"Authorization": f"Bearer {token}"})).status_code
    assert mine == 200
    (activation,) = await live_activations(runtime, issued.view.license.id)
    freed = await client.delete(f"/v1/activations/{activation.id}", headers={"Authorization": f"Bearer {token}"})
    assert freed.status_code in {200, 204}, freed.text
    served = await client.get("/inner/api/info", headers={SECRET_HEADER: secret})
    assert served.status_code == 200, served.text
    assert served.json()["License"]["status"] == "active"
    assert (await activate(client, issued)).status_code == 409  # the install holds the seat now


async def test_revoking_a_credential_frees_its_seat_and_calls_check_its_activation_in(
    runtime: Runtime, actor: Actor, make_license: LicenseFactory, clock: MovableClock
) -> None:
    license_id = (await make_license(terms=seats(1))).view.license.id
    first, second = await credentials(runtime, actor, license_id, 2)
    store = SqlInnerApiStore(runtime)
    caller = await store.authenticate(first)
    with pytest.raises(InnerApiSeatsInUse):
        await store.authenticate(second)
    clock.advance(timedelta(hours=3))
    await store.authenticate(first)
    assert await flush_check_ins(runtime) == 1
    (activation,) = await live_activations(runtime, license_id)
    assert activation.id == caller.activation_id
    assert activation.last_seen_at == clock()  # the install's calls keep its activation alive
    async with runtime.session_factory() as db:
        records = VendorInnerApiRecords(db, license_id=license_id, hasher=runtime.hasher, actor=actor, clock=clock)
        await service.revoke_credential(records, credential_id=caller.credential_id)
    store.forget_credentials()
    assert await live_activations(runtime, license_id) == []
    assert (await store.authenticate(second)).activation_id is not None
