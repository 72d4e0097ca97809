"""Exact under real concurrency: 200 concurrent writers against a remaining monthly quota of 50 get exactly 50.

On PostgreSQL the requests are split over two runtimes (two engines, two connection pools, two writers) on one
database, as two server processes would be; on SQLite they share one process's group-commit writer.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import func, select

from license_server.app import create_app
from license_server.auth.tokens import Actor
from license_server.billing.usage.models import Reservation, UsageCounter, UsageRecord
from license_server.config import Settings
from license_server.db.session import create_engine, create_session_factory
from license_server.runtime import Runtime
from license_server.signing.keys import KeyStore
from license_server.signing.service import Signer
from tests.billing.conftest import Platform, PlatformFactory, consume, subscribe, tiny_plan
from tests.conftest import PASSPHRASE, MovableClock

KEY = "app_invocation.max_monthly_count"
WRITERS = 200


@pytest.fixture
async def clients(
    runtime: Runtime, client: httpx.AsyncClient, settings: Settings, clock: MovableClock
) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One client per server: a second runtime on the same database for PostgreSQL."""
    if settings.is_sqlite:
        yield [client]
        return
    engine = create_engine(settings)
    second = Runtime(
        settings=settings,
        signer=Signer(KeyStore(settings.keys_dir, PASSPHRASE), refresh_seconds=0),
        engine=engine,
        session_factory=create_session_factory(engine),
        clock=clock,
    )
    transport = httpx.ASGITransport(app=create_app(second))  # type: ignore[arg-type]
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as other:
            yield [client, other]
    finally:
        await second.close()


async def _platform_with_50_left(
    make_platform: PlatformFactory, runtime: Runtime, actor: Actor, client: httpx.AsyncClient
) -> Platform:
    platform = await make_platform(catalogues=(tiny_plan("runs", {KEY: {"kind": "monthly", "limit": 60}}),))
    await subscribe(runtime, actor, platform, "org-1", "runs")
    assert (await consume(client, platform, "org-1", KEY, 10, "warm-up")).status_code == 201
    return platform


async def _counter(runtime: Runtime) -> tuple[int, int]:
    async with runtime.session_factory() as db:
        row = (await db.execute(select(UsageCounter.used, UsageCounter.held).where(UsageCounter.key == KEY))).one()
        return int(row.used), int(row.held)


async def test_200_concurrent_consumes_take_exactly_the_50_left(
    clients: list[httpx.AsyncClient], make_platform: PlatformFactory, runtime: Runtime, actor: Actor
) -> None:
    platform = await _platform_with_50_left(make_platform, runtime, actor, clients[0])

    async def one(i: int) -> httpx.Response:
        return await consume(clients[i % len(clients)], platform, "org-1", KEY, 1, f"run-{i}")

    responses = await asyncio.gather(*(one(i) for i in range(WRITERS)))
    outcomes = Counter(r.status_code for r in responses)
    assert outcomes == {201: 50, 403: 150}, outcomes
    assert {r.json()["code"] for r in responses if r.status_code == 403} == {"subscription_limit_reached"}
    assert await _counter(runtime) == (60, 0)
    async with runtime.session_factory() as db:
        assert await db.scalar(select(func.count()).select_from(UsageRecord)) == 51

    # Replays of every request id answer their first result, and change nothing.
    replays = await asyncio.gather(*(one(i) for i in range(WRITERS)))
    accepted = {i for i, r in enumerate(responses) if r.status_code == 201}
    for i, replay in enumerate(replays):
        if i in accepted:
            assert replay.status_code == 201
            assert replay.json() == responses[i].json()
        else:
            assert replay.status_code == 403
    assert await _counter(runtime) == (60, 0)


async def test_200_concurrent_reserves_hold_exactly_the_50_left_and_replays_answer_the_first(
    clients: list[httpx.AsyncClient], make_platform: PlatformFactory, runtime: Runtime, actor: Actor
) -> None:
    platform = await _platform_with_50_left(make_platform, runtime, actor, clients[0])

    async def reserve(i: int) -> httpx.Response:
        return await clients[i % len(clients)].post(
            platform.url("org-1", "usage/reserve"),
            headers=platform.headers,
            json={"key": KEY, "amount": 1, "request_id": f"job-{i}", "ttl_seconds": 600},
        )

    responses = await asyncio.gather(*(reserve(i) for i in range(WRITERS)))
    outcomes = Counter(r.status_code for r in responses)
    assert outcomes == {201: 50, 403: 150}, outcomes
    assert await _counter(runtime) == (10, 50)
    held = [i for i, r in enumerate(responses) if r.status_code == 201]
    replays = await asyncio.gather(*(reserve(i) for i in held))
    assert [r.json()["data"]["reservation_id"] for r in replays] == [
        responses[i].json()["data"]["reservation_id"] for i in held
    ]
    async with runtime.session_factory() as db:
        assert await db.scalar(select(func.count()).select_from(Reservation)) == 50

    # Commit half with less than held (the rest is freed), release the others: everything adds up exactly.
    async def finish(n: int, i: int) -> httpx.Response:
        c = clients[n % len(clients)]
        if n % 2:
            return await c.post(platform.url("org-1", f"usage/reservations/job-{i}/release"), headers=platform.headers)
        return await c.post(
            platform.url("org-1", f"usage/reservations/job-{i}/commit"), headers=platform.headers, json={"actual": 1}
        )

    finished = await asyncio.gather(*(finish(n, i) for n, i in enumerate(held)))
    assert all(r.status_code == 201 for r in finished), [r.text for r in finished if r.status_code != 201]
    assert await _counter(runtime) == (10 + 25, 0)
