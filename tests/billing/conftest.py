"""Billing fixtures: the example catalogues imported, a platform with its secret, and helpers for the platform API."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from license_server.auth.tokens import Actor
from license_server.billing.accounts import service as accounts
from license_server.billing.plans import service as plans
from license_server.runtime import Runtime

EXAMPLES = Path(__file__).parents[2] / "examples" / "plans"


def catalogue(name: str) -> plans.Catalogue:
    return plans.Catalogue.model_validate(json.loads((EXAMPLES / name).read_text()))


def tiny_plan(code: str, quotas: dict[str, Any], **billing: Any) -> plans.Catalogue:
    return plans.Catalogue.model_validate(
        {"plans": [{"code": code, "name": code, "billing": {"quotas": quotas, **billing}}]}
    )


@dataclass
class Platform:
    id: str
    secret: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}

    def url(self, external_id: str, tail: str) -> str:
        return f"/v1/billing/accounts/{external_id}/{tail}"


PlatformFactory = Callable[..., Awaitable[Platform]]


@pytest.fixture
def make_platform(runtime: Runtime, actor: Actor) -> PlatformFactory:
    async def make(
        *, default_plan: str | None = None, catalogues: tuple[plans.Catalogue, ...] = (), **kw: Any
    ) -> Platform:
        async with runtime.session_factory() as db:
            for entry in catalogues:
                await plans.import_catalogue(db, actor=actor, catalogue=entry, clock=runtime.clock)
            created = await accounts.create_platform(
                db,
                actor=actor,
                hasher=runtime.hasher,
                name="Test Cloud",
                default_plan=default_plan,
                clock=runtime.clock,
                **kw,
            )
            return Platform(id=str(created.platform.id), secret=created.secret)

    return make


async def subscribe(runtime: Runtime, actor: Actor, platform: Platform, external_id: str, plan: str, **kw: Any) -> None:
    import uuid

    async with runtime.session_factory() as db:
        await accounts.create_subscription(
            db,
            actor=actor,
            platform_id=uuid.UUID(platform.id),
            external_id=external_id,
            plan=plan,
            clock=runtime.clock,
            **kw,
        )


async def consume(
    client: httpx.AsyncClient, platform: Platform, external_id: str, key: str, amount: int, idempotency_key: str
) -> httpx.Response:
    return await client.post(
        platform.url(external_id, "usage/consume"),
        headers=platform.headers,
        json={"key": key, "amount": amount, "idempotency_key": idempotency_key},
    )
