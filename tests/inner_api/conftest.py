"""The contract suite runs against a ``target``: a server exposing ``/inner/api`` plus the means to set up its state.

Today the target is the vendor server (state set through its admin and deployment APIs). The edge will be a second
target implementing the same ``Target`` protocol, so every contract test runs against both without change.
The contract tests speak HTTP only and run on SQLite; the store and services run on both databases in
test_store.py.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import httpx
import pytest

from license_server.deployments.jobs import flush_check_ins
from license_server.runtime import Runtime
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
    client: httpx.AsyncClient
    clock: MovableClock
    # Statuses this target can be driven into through its own means (the vendor cannot report `lost` to a caller:
    # every call is itself a check-in; `none` means no license at all, which a valid secret rules out).
    reachable_statuses: frozenset[str]

    async def license(self, *, terms: dict[str, Any] | None = None, starts_in: timedelta = timedelta(0)) -> Licensed:
        """A license issued now, expiring in 365 days, and an inner-API secret for it."""

    async def update_terms(self, licensed: Licensed, terms: dict[str, Any]) -> None: ...

    async def suspend(self, licensed: Licensed) -> None: ...

    async def revoke_secret(self, licensed: Licensed) -> None: ...

    async def report_members(self, licensed: Licensed, members: dict[str, int], seats: int = 0) -> None:
        """A usage report naming each workspace with its member count."""

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

    async def report_members(self, licensed: Licensed, members: dict[str, int], seats: int = 0) -> None:
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
                "measured_at": self.clock().isoformat(),
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


@pytest.fixture
def backend() -> str:
    """The contract is about HTTP shapes; the storage it relies on is covered on both databases in test_store.py."""
    return "sqlite"


@pytest.fixture
async def target(
    client: httpx.AsyncClient, runtime: Runtime, clock: MovableClock, owner_headers: dict[str, str]
) -> Target:
    return VendorTarget(client, runtime, clock, owner_headers)


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
