"""The contract suite runs against a ``target``: a server exposing ``/inner/api`` plus the means to set up its state.

Two targets implement the ``Target`` protocol, so every contract test runs against both: the vendor server (state set
through its admin and deployment APIs) and the edge (``license-server edge``: a license file the vendor answered for
the edge's activation request, renewed when terms change, and edge-local state set the way the edge CLI sets it).
The contract tests speak HTTP only and run on SQLite; the store and services run on both databases in
test_store.py.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest

from license_server.deployments.jobs import flush_check_ins
from license_server.edge.app import create_edge_app
from license_server.edge.inner_store import EdgeInnerApiRecords
from license_server.edge.runtime import EdgeRuntime
from license_server.inner_api import service
from license_server.offline.files import build_activation_request
from license_server.offline.install import load_or_create_install_key
from license_server.runtime import Runtime
from license_server.verifier import Verifier
from tests.conftest import MovableClock

SECRET_HEADER = "Enterprise-Api-Secret-Key"


@dataclass
class Licensed:
    """One license as the target knows it, with the secret a Dify deployment would be configured with."""

    license_id: str
    secret: str
    key: str = ""
    deployment_token: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Target(Protocol):
    clock: MovableClock
    # Statuses this target can be driven into through its own means (the vendor cannot report `lost` to a caller:
    # every call is itself a check-in; `none` means no license at all, which a valid secret rules out).
    reachable_statuses: frozenset[str]

    @property
    def client(self) -> httpx.AsyncClient:
        """Where the Dify deployment of the newest license sends its calls."""

    async def license(self, *, terms: dict[str, Any] | None = None, starts_in: timedelta = timedelta(0)) -> Licensed:
        """A license issued now, expiring in 365 days, and an inner-API secret for it."""

    async def update_terms(self, licensed: Licensed, terms: dict[str, Any]) -> None: ...

    async def suspend(self, licensed: Licensed) -> None: ...

    async def revoke_secret(self, licensed: Licensed) -> None: ...

    async def report_members(
        self, licensed: Licensed, members: dict[str, int], seats: int = 0, measured_at: datetime | None = None
    ) -> None:
        """A usage report naming each workspace with its member count, measured now unless ``measured_at``."""

    async def set_default_workspace(self, licensed: Licensed, workspace_id: str | None) -> None: ...

    async def override_workspace(
        self, licensed: Licensed, workspace_id: str, *, invite: bool, transfer: bool
    ) -> None: ...

    async def allow_user(self, licensed: Licensed, app_id: str, user_id: str) -> None: ...

    async def settle(self) -> None:
        """Write what the target buffers (check-ins), as its scheduler would."""


class VendorTarget:
    reachable_statuses = frozenset({"inactive", "active", "expiring", "expired"})

    def __init__(self, client: httpx.AsyncClient, runtime: Runtime, clock: MovableClock, admin: dict[str, str]):
        self.client, self.runtime, self.clock, self.admin = client, runtime, clock, admin

    async def _ok(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.client.request(method, path, headers=kwargs.pop("headers", self.admin), **kwargs)
        assert response.status_code < 300, (method, path, response.status_code, response.text)
        return response.json()

    async def license(self, *, terms: dict[str, Any] | None = None, starts_in: timedelta = timedelta(0)) -> Licensed:
        customer = await self._ok("POST", "/v1/admin/customers/", json={"name": "Dify Operator Inc"})
        now = self.clock()
        issued = await self._ok(
            "POST",
            "/v1/admin/licenses/",
            json={
                "customer_id": customer["id"],
                "starts_at": (now + starts_in).isoformat(),
                "expires_at": (now + timedelta(days=365)).isoformat(),
                "terms": {"max_activations": 0, **(terms or {})},
            },
        )
        license_id = issued["id"]
        created = await self._ok("POST", f"/v1/admin/licenses/{license_id}/inner-api/credentials", json={})
        return Licensed(license_id=license_id, secret=created["secret"], key=issued["key"])

    async def update_terms(self, licensed: Licensed, terms: dict[str, Any]) -> None:
        await self._ok("PATCH", f"/v1/admin/licenses/{licensed.license_id}", json={"terms": terms})

    async def suspend(self, licensed: Licensed) -> None:
        await self._ok("POST", f"/v1/admin/licenses/{licensed.license_id}/actions/suspend", json={})

    async def revoke_secret(self, licensed: Licensed) -> None:
        base = f"/v1/admin/licenses/{licensed.license_id}/inner-api/credentials"
        for credential in await self._ok("GET", base):
            await self._ok("DELETE", f"{base}/{credential['id']}")

    async def report_members(
        self, licensed: Licensed, members: dict[str, int], seats: int = 0, measured_at: datetime | None = None
    ) -> None:
        if not licensed.deployment_token:
            activation = await self._ok(
                "POST", "/v1/activations", headers={}, json={"license_key": licensed.key, "fingerprint": "dify-1"}
            )
            licensed.deployment_token = activation["deployment_token"]
        await self._ok(
            "POST",
            "/v1/usage",
            headers={"Authorization": f"Bearer {licensed.deployment_token}"},
            json={
                "measured_at": (measured_at or self.clock()).isoformat(),
                "workspaces": [{"id": ws, "members": n} for ws, n in members.items()],
                "seats_used": seats,
                "idempotency_key": uuid.uuid4().hex,
            },
        )

    async def set_default_workspace(self, licensed: Licensed, workspace_id: str | None) -> None:
        await self._ok(
            "PUT",
            f"/v1/admin/licenses/{licensed.license_id}/inner-api/default-workspace",
            json={"workspace_id": workspace_id},
        )

    async def override_workspace(self, licensed: Licensed, workspace_id: str, *, invite: bool, transfer: bool) -> None:
        await self._ok(
            "PUT",
            f"/v1/admin/licenses/{licensed.license_id}/inner-api/workspaces/{workspace_id}",
            json={"allow_member_invite": invite, "allow_owner_transfer": transfer},
        )

    async def allow_user(self, licensed: Licensed, app_id: str, user_id: str) -> None:
        await self._ok(
            "POST",
            f"/v1/admin/licenses/{licensed.license_id}/inner-api/apps/{app_id}/allowed-users",
            json={"user_ids": [user_id]},
        )

    async def settle(self) -> None:
        await flush_check_ins(self.runtime)


EDGE_FINGERPRINT = "fp1:" + "cd" * 32


@dataclass
class _Edge:
    runtime: EdgeRuntime
    client: httpx.AsyncClient
    license_path: Path


class EdgeTarget:
    """Each license is one air-gapped install: its own data directory, license file and edge app.

    The vendor answers the edge's activation request (and renews the file when the license changes, as an operator
    carries a renewed file in); everything Dify's enterprise service keeps lives in the edge's own SQLite file.
    """

    reachable_statuses = frozenset({"inactive", "active", "expiring", "expired", "lost"})

    def __init__(self, vendor: VendorTarget, root: Path, stack: AsyncExitStack) -> None:
        self.vendor, self.root, self.stack, self.clock = vendor, root, stack, vendor.clock
        self.edges: dict[str, _Edge] = {}
        self._latest: _Edge | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        """The newest edge's client (a Dify deployment talks to its own edge)."""
        assert self._latest is not None, "no edge yet: call license() first"
        return self._latest.client

    def _edge(self, licensed: Licensed) -> _Edge:
        return self.edges[licensed.license_id]

    @asynccontextmanager
    async def _records(self, licensed: Licensed) -> AsyncIterator[EdgeInnerApiRecords]:
        """The install's records, as the edge CLI opens them (the same inner-API service does the rest)."""
        async with self._edge(licensed).runtime.session_factory() as session:
            yield EdgeInnerApiRecords(session, clock=self.clock)

    async def license(self, *, terms: dict[str, Any] | None = None, starts_in: timedelta = timedelta(0)) -> Licensed:
        vendor = self.vendor
        customer = await vendor._ok("POST", "/v1/admin/customers/", json={"name": "Air-gapped Dify Inc"})
        now = self.clock()
        issued = await vendor._ok(
            "POST",
            "/v1/admin/licenses/",
            json={
                "customer_id": customer["id"],
                "starts_at": now.isoformat(),
                "expires_at": (now + timedelta(days=365)).isoformat(),
                "terms": {"max_activations": 0, **(terms or {})},
            },
        )
        data_dir = self.root / f"edge-{len(self.edges)}"
        request = build_activation_request(
            install_key=load_or_create_install_key(data_dir),
            license_key=issued["key"],
            fingerprint=EDGE_FINGERPRINT,
            hostname="dify-airgapped",
            now=now,
        )
        answer = await vendor._ok("POST", "/v1/admin/offline/responses", json={"request": json.loads(request)})
        license_path = data_dir.parent / f"{data_dir.name}.lic"
        license_path.write_text(answer["license_file"])
        licensed = Licensed(license_id=issued["id"], secret="", key=issued["key"])
        if starts_in:  # a license the vendor cannot activate yet: it moves the start after answering
            await vendor._ok("PATCH", f"/v1/admin/licenses/{issued['id']}", json={"starts_at": iso(now + starts_in)})
        runtime = EdgeRuntime(
            license_path=license_path,
            verifier=Verifier(vendor.runtime.signer.keyring().root_public_key, clock=self.clock),
            data_dir=data_dir,
            fingerprint=EDGE_FINGERPRINT,
            clock=self.clock,
        )
        app = create_edge_app(runtime)
        await runtime.start()  # the app's startup hook (the ASGI transport runs no lifespan)
        self.stack.push_async_callback(runtime.close)
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]  # Litestar narrows the ASGI scope types
        client = await self.stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url="http://edge"))
        self._latest = self.edges[issued["id"]] = _Edge(runtime, client, license_path)
        if starts_in:
            await self._renew(licensed)
        async with runtime.session_factory() as session:
            created = await service.create_credential(EdgeInnerApiRecords(session, clock=self.clock), label="dify")
        licensed.secret = created.secret
        return licensed

    async def _renew(self, licensed: Licensed) -> None:
        """The vendor renews the file; the operator writes it over the old one (the edge picks it up)."""
        edge = self._edge(licensed)
        answer = await self.vendor._ok(
            "POST", "/v1/admin/offline/renewals", json={"license_file": edge.license_path.read_text()}
        )
        before = edge.license_path.stat().st_mtime_ns
        edge.license_path.write_text(answer["license_file"])
        if edge.license_path.stat().st_mtime_ns == before:  # same clock tick: make the swap visible, as time would
            os.utime(edge.license_path, ns=(before + 1000, before + 1000))

    async def update_terms(self, licensed: Licensed, terms: dict[str, Any]) -> None:
        await self.vendor.update_terms(licensed, terms)
        await self._renew(licensed)

    async def suspend(self, licensed: Licensed) -> None:
        await self.vendor.suspend(licensed)
        await self._renew(licensed)

    async def revoke_secret(self, licensed: Licensed) -> None:
        async with self._records(licensed) as records:
            for credential in await service.list_credentials(records):
                await service.revoke_credential(records, credential_id=credential.id)

    async def report_members(
        self, licensed: Licensed, members: dict[str, int], seats: int = 0, measured_at: datetime | None = None
    ) -> None:
        response = await self._edge(licensed).client.post(
            "/v1/usage",
            json={
                "measured_at": (measured_at or self.clock()).isoformat(),
                "workspaces": [{"id": ws, "members": n} for ws, n in members.items()],
                "seats_used": seats,
                "idempotency_key": uuid.uuid4().hex,
            },
        )
        assert response.status_code == 200, response.text

    async def set_default_workspace(self, licensed: Licensed, workspace_id: str | None) -> None:
        async with self._records(licensed) as records:
            await service.set_default_workspace(records, workspace_id=workspace_id)

    async def override_workspace(self, licensed: Licensed, workspace_id: str, *, invite: bool, transfer: bool) -> None:
        async with self._records(licensed) as records:
            await service.set_workspace_policy(
                records, workspace_id=workspace_id, allow_member_invite=invite, allow_owner_transfer=transfer
            )

    async def allow_user(self, licensed: Licensed, app_id: str, user_id: str) -> None:
        async with self._records(licensed) as records:
            await service.allow_users(records, app_id=app_id, user_ids=[user_id])

    async def settle(self) -> None:
        """Nothing is buffered on the edge."""


@pytest.fixture
def backend() -> str:
    """The contract is about HTTP shapes; the storage it relies on is covered on both databases in test_store.py."""
    return "sqlite"


@pytest.fixture
async def vendor_target(
    client: httpx.AsyncClient, runtime: Runtime, clock: MovableClock, owner_headers: dict[str, str]
) -> VendorTarget:
    return VendorTarget(client, runtime, clock, owner_headers)


@pytest.fixture
def target(vendor_target: VendorTarget) -> Target:
    """The vendor server; test_contract.py runs its tests against the edge as well (``edge_target``)."""
    return vendor_target


@pytest.fixture
async def edge_target(
    client: httpx.AsyncClient, runtime: Runtime, clock: MovableClock, owner_headers: dict[str, str], tmp_path: Path
) -> AsyncIterator[EdgeTarget]:
    async with AsyncExitStack() as stack:
        yield EdgeTarget(VendorTarget(client, runtime, clock, owner_headers), tmp_path, stack)


class Dify:
    """Calls the way Dify's enterprise client makes them: the raw secret in one header, JSON bodies."""

    def __init__(self, target: Target, licensed: Licensed) -> None:
        self.client = target.client
        self.headers = {SECRET_HEADER: licensed.secret}

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.get("/inner/api" + path, headers=self.headers, **kwargs)

    async def post(self, path: str, body: Any) -> httpx.Response:
        return await self.client.post("/inner/api" + path, headers=self.headers, json=body)

    async def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.delete("/inner/api" + path, headers=self.headers, **kwargs)

    async def info(self) -> dict[str, Any]:
        response = await self.get("/info")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


def iso(moment: datetime) -> str:
    return moment.isoformat()
