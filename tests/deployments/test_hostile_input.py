"""Bad input to the deployment API: a 4xx problem each, nothing written. And the poll cache's staleness bound."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from license_server.deployments.models import Activation
from license_server.events.models import Event
from license_server.runtime import Runtime
from tests.conftest import LicenseFactory
from tests.deployments.conftest import activate, bearer


async def rows(runtime: Runtime) -> tuple[int, int]:
    async with runtime.session_factory() as db:
        activations = await db.scalar(select(func.count()).select_from(Activation))
        events = await db.scalar(select(func.count()).select_from(Event))
    return int(activations or 0), int(events or 0)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"fingerprint": "x"}, "license_key"),
        ({"license_key": "K"}, "fingerprint"),
        ({"license_key": 12345, "fingerprint": "x"}, "license_key"),
        ({"license_key": "K", "fingerprint": ""}, "fingerprint"),
        ({"license_key": "K", "fingerprint": "x" * 257}, "fingerprint"),
        ({"license_key": "K", "fingerprint": "x", "hostname": ["a"]}, "hostname"),
        ({"license_key": "K", "fingerprint": "x", "reissue_token": "maybe"}, "reissue_token"),
        ({"license_key": "K", "fingerprint": "x", "unexpected": True}, "unexpected"),
    ],
)
async def test_malformed_activation_bodies_get_400_naming_the_field(
    client: httpx.AsyncClient, make_license: LicenseFactory, runtime: Runtime, body: dict[str, Any], field: str
) -> None:
    issued = await make_license()
    if body.get("license_key") == "K":
        body = {**body, "license_key": issued.key}
    before = await rows(runtime)
    response = await client.post("/v1/activations", json=body)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert any(e["field"].startswith(field) for e in response.json()["errors"]), response.json()
    assert await rows(runtime) == before


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b"[]", b'{"license_key": "\xff\xfe", "fingerprint": "x"}', b"null", b'"just a string"'],
)
async def test_undecodable_bodies_get_400(client: httpx.AsyncClient, content: bytes) -> None:
    response = await client.post("/v1/activations", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400, (content, response.text)
    assert response.json()["code"] == "validation_error"


async def test_oversized_body_gets_413_and_nothing_is_written(client: httpx.AsyncClient, runtime: Runtime) -> None:
    body = b'{"license_key": "K", "fingerprint": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    response = await client.post("/v1/activations", content=body, headers={"content-type": "application/json"})
    assert (response.status_code, response.json()["code"]) == (413, "request_too_large")
    assert await rows(runtime) == (0, 0)


async def test_admin_tokens_do_not_work_as_deployment_tokens(
    client: httpx.AsyncClient, owner_headers: dict[str, str]
) -> None:
    response = await client.get("/v1/license", headers=owner_headers)
    assert (response.status_code, response.json()["code"]) == (401, "invalid_deployment_token")
    report = {"measured_at": "2026-01-01T00:00:00Z", "idempotency_key": "k", "workspaces": []}
    usage = await client.post("/v1/usage", json=report, headers=owner_headers)
    assert (usage.status_code, usage.json()["code"]) == (401, "invalid_deployment_token")


async def test_cached_polls_see_admin_changes_at_once_and_others_within_the_staleness_bound(
    client: httpx.AsyncClient, make_license: LicenseFactory, runtime: Runtime
) -> None:
    """A change made through the service is pushed to the poll cache when it commits; a change behind its back (a
    raw UPDATE, which publishes nothing) is still seen within the cache's bound."""
    from sqlalchemy import update

    from license_server.auth.tokens import cli_actor
    from license_server.deployments.runtime_state import LoadingCache
    from license_server.licenses import service as licenses
    from license_server.licenses.models import License

    cache_seconds = 0.5
    runtime.poll_state.activations = LoadingCache(cache_seconds)
    runtime.poll_state.licenses = LoadingCache(cache_seconds)
    issued = await make_license()
    token = (await activate(client, issued)).json()["deployment_token"]
    etag = (await client.get("/v1/license", headers=bearer(token))).headers["etag"]
    async with runtime.session_factory() as db:
        await licenses.suspend_license(db, actor=cli_actor(), license_id=issued.view.license.id, clock=runtime.clock)
    suspended = await client.get("/v1/license", headers={**bearer(token), "If-None-Match": etag})
    assert suspended.status_code == 200  # the suspension's invalidation arrived with its commit
    etag = suspended.headers["etag"]
    async with runtime.session_factory() as db:
        await db.execute(update(License).where(License.id == issued.view.license.id).values(suspended_at=None))
        await db.commit()
    cached = await client.get("/v1/license", headers={**bearer(token), "If-None-Match": etag})
    assert cached.status_code == 304  # served from the cache: nothing told it of the raw UPDATE
    await asyncio.sleep(cache_seconds + 0.1)
    fresh = await client.get("/v1/license", headers={**bearer(token), "If-None-Match": etag})
    assert fresh.status_code == 200  # after the bound, the document says reinstated
