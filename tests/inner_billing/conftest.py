"""Dify's billing API under test: a platform on seed 000's catalogue, and a client that speaks like Dify's.

``DifyBilling`` sends exactly what Dify's ``BillingService`` sends (contract §1): the secret in
``Billing-Api-Secret-Key``, ``Content-Type: application/json`` on every request, query parameters for GET and DELETE,
JSON or query parameters (with an empty body) for POST and PUT, and it insists on status 200 like Dify does.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from license_server.billing.accounts import service as accounts
from license_server.billing.subscriptions import service as subscriptions
from license_server.runtime import Runtime
from tests.billing.conftest import Platform, PlatformFactory, catalogue, make_platform, subscribe, tiny_plan

__all__ = ["DifyBilling", "make_platform", "record_payment", "subscribe", "tiny_plan"]

BASE = "/inner/billing"
SECRET_HEADER = "Billing-Api-Secret-Key"
DIFY_CLOUD = catalogue("dify-cloud.json")


@dataclass
class DifyBilling:
    client: httpx.AsyncClient
    platform: Platform

    @property
    def headers(self) -> dict[str, str]:
        return {SECRET_HEADER: self.platform.secret, "Content-Type": "application/json"}

    async def raw(self, method: str, endpoint: str, **kw: Any) -> httpx.Response:
        return await self.client.request(method, BASE + endpoint, headers=self.headers, **kw)

    async def call(self, method: str, endpoint: str, **kw: Any) -> Any:
        response = await self.raw(method, endpoint, **kw)
        assert response.status_code == 200, f"{method} {endpoint}: {response.status_code} {response.text}"
        return response.json()

    async def get(self, endpoint: str, **params: Any) -> Any:
        return await self.call("GET", endpoint, params=params)

    async def post(self, endpoint: str, body: dict[str, Any] | None = None, **params: Any) -> Any:
        if body is None:  # query parameters only: an empty body, still labelled JSON (observed on the wire)
            return await self.call("POST", endpoint, params=params, content=b"")
        return await self.call("POST", endpoint, params=params, json=body)

    async def reserve(
        self, tenant_id: str, request_id: str, *, feature_key: str = "api_rate_limit", amount: int = 1
    ) -> Any:
        return await self.post(
            "/quota/reserve",
            {"tenant_id": tenant_id, "feature_key": feature_key, "request_id": request_id, "amount": amount},
        )


@pytest.fixture
async def dify_platform(make_platform: PlatformFactory) -> Platform:
    """Dify Cloud on seed 000's plans; a workspace seen first starts on Sandbox."""
    return await make_platform(default_plan="dify-sandbox", catalogues=(DIFY_CLOUD,))


@pytest.fixture
def dify(client: httpx.AsyncClient, dify_platform: Platform) -> DifyBilling:
    return DifyBilling(client, dify_platform)


def new_tenant() -> str:
    return str(uuid.uuid4())


async def record_payment(runtime: Runtime, platform: Platform, tenant_id: str, *, succeeded: bool) -> None:
    """A payment for the workspace's (latest) subscription failed (-> past due) or succeeded, as the payments side
    reports it to the lifecycle."""
    async with runtime.session_factory() as db:
        account = await accounts.get_account(db, uuid.UUID(platform.id), tenant_id)
        views = await accounts.list_subscriptions(db, account_id=account.id)
        await subscriptions.record_payment_outcome(
            db, views[-1].subscription.id, succeeded=succeeded, now=runtime.clock(), state=runtime.billing
        )
    runtime.billing.forget_platforms()
