"""Replicas racing, made deterministic: the other replica's whole run happens between our read and our write."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import Insert, Update
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.tokens import Actor
from license_server.events.service import EventType
from license_server.events.webhooks import fan_out
from license_server.runtime import Runtime
from tests.events.conftest import Receiver, deliver, delivery_rows, emit, make_endpoint


def race_before(
    monkeypatch: pytest.MonkeyPatch, table: str, kind: type[Insert | Update], rival: Callable[[], Awaitable[int]]
) -> list[int]:
    """Run ``rival`` to completion just before the first ``kind`` statement on ``table``; returns its result."""
    original = AsyncSession.execute
    results: list[int] = []

    async def execute(self: AsyncSession, statement: Any, *args: Any, **kwargs: Any) -> Any:
        if not results and isinstance(statement, kind) and getattr(statement.table, "name", None) == table:
            results.append(-1)  # the rival's own statements pass straight through
            results[0] = await rival()
        return await original(self, statement, *args, **kwargs)

    monkeypatch.setattr(AsyncSession, "execute", execute)
    return results


async def test_a_fan_out_that_loses_the_race_keeps_nothing(
    runtime: Runtime, actor: Actor, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    await make_endpoint(runtime, actor, receiver.url("/a"))
    await make_endpoint(runtime, actor, receiver.url("/b"))
    await emit(runtime, *[EventType.LICENSE_RENEWED] * 7)

    async def rival() -> int:
        async with runtime.session_factory() as session:
            return await fan_out(session, clock=runtime.clock)

    rival_result = race_before(monkeypatch, "webhook_deliveries", Insert, rival)
    async with runtime.session_factory() as session:
        ours = await fan_out(session, clock=runtime.clock)

    assert (ours, rival_result) == (0, [14])
    rows = await delivery_rows(runtime)
    assert len(rows) == len({(r.endpoint_id, r.event_id) for r in rows}) == 14


async def test_a_delivery_run_that_loses_the_claim_sends_nothing(
    runtime: Runtime, actor: Actor, receiver: Receiver, http_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await make_endpoint(runtime, actor, receiver.url("/claimed"))
    await emit(runtime, *[EventType.ACTIVATION_DEACTIVATED] * 5)
    async with runtime.session_factory() as session:
        await fan_out(session, clock=runtime.clock)

    async def rival() -> int:
        return await deliver(runtime, http_client)

    rival_result = race_before(monkeypatch, "webhook_deliveries", Update, rival)
    ours = await deliver(runtime, http_client, per_endpoint_concurrency=1)  # one claim at a time: the first is raced

    assert (ours, rival_result) == (0, [5])
    assert len(receiver.to("/claimed")) == 5
    assert {(r.state, r.attempts) for r in await delivery_rows(runtime)} == {("succeeded", 1)}
