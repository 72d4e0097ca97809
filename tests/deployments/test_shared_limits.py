"""The limits replicas share on PostgreSQL (replicas/limits.py), driven directly: several limiter objects on one
database are one limit, also when they race; a refusal's Retry-After is when the sliding window lets the key in."""

from __future__ import annotations

import asyncio

import pytest

from license_server.deployments.runtime_state import DistinctFailureLimiter
from license_server.replicas.invalidation import InvalidationBus, Topic
from license_server.replicas.limits import FailureCounter, SharedRequestLimit, seconds_until_allowed
from license_server.runtime import Runtime


def test_a_refused_key_waits_until_the_previous_window_has_decayed_enough() -> None:
    # 10 a minute; 8 in the previous window, 5 in this one, a quarter in: floor(8 * 0.75) + 5 + 1 = 12 > 10. Room
    # once floor(8 * (1 - f)) + 6 <= 10, i.e. 8 * (1 - f) < 5: past f = 0.375, an eighth of a window later.
    assert seconds_until_allowed(limit=10, previous=8, current=5, frac=0.25, window=60) == pytest.approx(7.5)
    # This window alone is full: wait for the next one, and in it until this one's weight is below the limit.
    assert seconds_until_allowed(limit=10, previous=0, current=10, frac=0.5, window=60) == pytest.approx(30)
    assert seconds_until_allowed(limit=10, previous=0, current=20, frac=0.5, window=60) == pytest.approx(60)


@pytest.fixture
def backend() -> str:
    return "postgres"


@pytest.mark.postgres
async def test_three_limiters_on_one_database_are_one_limit_under_a_race(runtime: Runtime) -> None:
    replicas = [SharedRequestLimit(runtime.engine, 10, prefix="race") for _ in range(3)]
    answers = await asyncio.gather(*(replicas[i % 3].hit("one-key") for i in range(30)))
    assert answers.count(None) == 10
    refused = [a for a in answers if a is not None]
    assert all(1 <= retry <= 60 for retry in refused)
    # A replica that was refused answers the next request for the key itself, without a round trip.
    assert await replicas[0].hit("one-key") is not None
    assert await replicas[1].hit("another-key") is None  # keys are counted apart


@pytest.mark.postgres
async def test_failures_recorded_on_two_replicas_count_together_and_block_both(
    runtime: Runtime,
) -> None:
    buses = [InvalidationBus(), InvalidationBus()]  # delivery between them is the listener's job; here: by hand
    pushed: list[str | None] = []
    buses[1].subscribe(Topic.AUTH_BLOCK, pushed.append)
    counters = [
        FailureCounter(
            DistinctFailureLimiter(4), limit=4, fingerprint=runtime.hasher.fingerprint, engine=runtime.engine, bus=bus
        )
        for bus in buses
    ]
    for i in range(3):
        await counters[i % 2].record("deployment-token:203.0.113.9", f"wrong-{i}")
    assert [c.retry_after("deployment-token:203.0.113.9") for c in counters] == [None, None]
    await counters[1].record("deployment-token:203.0.113.9", "wrong-1")  # the same wrong secret again: counts once
    assert counters[1].retry_after("deployment-token:203.0.113.9") is None
    await counters[1].record("deployment-token:203.0.113.9", "wrong-3")  # the fourth different one, on replica 2
    assert counters[1].retry_after("deployment-token:203.0.113.9") is not None
    assert counters[0].retry_after("deployment-token:203.0.113.9") is None  # until the push arrives ...
    [block] = pushed
    buses[0].deliver(Topic.AUTH_BLOCK, block)
    assert counters[0].retry_after("deployment-token:203.0.113.9") is not None  # ... which blocks it there too
