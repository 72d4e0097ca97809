"""Subscription lifecycle fixtures: a two-plan catalogue (Starter $99, Pro $399 with a 14-day trial), an account on a
test clock, and helpers over the admin and platform APIs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from license_server.billing.plans import service as plans
from license_server.events.models import Event
from license_server.runtime import Runtime
from tests.billing.conftest import Platform, PlatformFactory

RUNS = "app_invocation.max_monthly_count"
APPS = "app.max_total_count"
T0 = datetime(2027, 1, 10, tzinfo=UTC)
CATALOGUE = plans.Catalogue.model_validate(
    {
        "plans": [
            {
                "code": "starter",
                "name": "Starter",
                "billing": {
                    "price": "99",
                    "quotas": {RUNS: {"kind": "monthly", "limit": 5}, APPS: {"kind": "total", "limit": 2}},
                },
            },
            {
                "code": "pro",
                "name": "Pro",
                "billing": {
                    "price": "399",
                    "trial_days": 14,
                    "included_credits": "100",
                    "quotas": {RUNS: {"kind": "monthly", "limit": 10}, APPS: {"kind": "total", "limit": 5}},
                },
            },
            {
                # Pro at no charge: its invoices are issued paid, so a clock can run months without payments
                "code": "pro-comp",
                "name": "Pro (complimentary)",
                "billing": {
                    "price": "0",
                    "trial_days": 14,
                    "included_credits": "100",
                    "quotas": {RUNS: {"kind": "monthly", "limit": 10}, APPS: {"kind": "total", "limit": 5}},
                },
            },
        ]
    }
)
CLOCKS = "/v1/admin/billing/test-clocks"


@dataclass
class Clocked:
    """One account (``org-1``) on a test clock, reached through both APIs."""

    client: httpx.AsyncClient
    runtime: Runtime
    platform: Platform
    admin: dict[str, str]
    clock_id: str

    async def subscribe(self, plan: str, external_id: str = "org-1") -> dict[str, Any]:
        response = await self.client.post(
            f"/v1/admin/billing/platforms/{self.platform.id}/accounts/{external_id}/subscriptions",
            json={"plan": plan},
            headers=self.admin,
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    def subscription_url(self, subscription_id: str, tail: str = "") -> str:
        return f"/v1/admin/billing/platforms/{self.platform.id}/subscriptions/{subscription_id}/{tail}"

    async def subscription(self, subscription_id: str) -> dict[str, Any]:
        response = await self.client.get(self.subscription_url(subscription_id), headers=self.admin)
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def act(self, subscription_id: str, verb: str, body: Any = None) -> dict[str, Any]:
        response = await self.client.post(
            self.subscription_url(subscription_id, f"actions/{verb}"), json=body, headers=self.admin
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def advance(self, **move: Any) -> dict[str, Any]:
        response = await self.client.post(f"{CLOCKS}/{self.clock_id}/advance", json=move, headers=self.admin)
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def platform_call(
        self, method: str, tail: str, body: Any = None, external_id: str = "org-1"
    ) -> httpx.Response:
        return await self.client.request(
            method, self.platform.url(external_id, tail), headers=self.platform.headers, json=body
        )

    async def report(self) -> dict[str, Any]:
        response = await self.platform_call("GET", "limits")
        assert response.status_code == 200, response.text
        return dict(response.json()["data"])

    async def entry(self, key: str) -> dict[str, Any]:
        return next(e for e in (await self.report())["limits"] if e["key"] == key)

    async def events(self, subscription_id: str) -> list[str]:
        """The subscription.* event types emitted for this subscription, oldest first."""
        async with self.runtime.session_factory() as db:
            rows = await db.scalars(select(Event).where(Event.type.like("subscription.%")).order_by(Event.id))
            return [
                e.type.removeprefix("subscription.") for e in rows if e.data.get("subscription_id") == subscription_id
            ]


@pytest.fixture
async def clocked(
    client: httpx.AsyncClient, runtime: Runtime, make_platform: PlatformFactory, owner_headers: dict[str, str]
) -> Clocked:
    platform = await make_platform(catalogues=(CATALOGUE,))
    # The account appears (the platform has no default plan: no subscription), joins a clock, then subscribes.
    for external_id in ("org-1", "org-2"):
        assert (await client.get(platform.url(external_id, "status"), headers=platform.headers)).status_code == 200
    created = await client.post(CLOCKS, json={"name": "lifecycle", "frozen_now": T0.isoformat()}, headers=owner_headers)
    assert created.status_code == 201, created.text
    clock_id = created.json()["id"]
    attached = await client.post(
        f"{CLOCKS}/{clock_id}/attach",
        json={"platform_id": platform.id, "external_ids": ["org-1"]},
        headers=owner_headers,
    )
    assert (attached.status_code, attached.json()["accounts"]) == (201, ["org-1"])
    return Clocked(client, runtime, platform, owner_headers, clock_id)


def sub_id(body: dict[str, Any]) -> uuid.UUID:
    return uuid.UUID(body["id"])
