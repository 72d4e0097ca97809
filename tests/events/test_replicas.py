"""Three delivery workers at once on one database, each with its own runtime, connection pool, event loop and thread,
as three replicas run the webhook job: each delivery of a burst to a slow receiver is attempted once, and a slow
receiver does not hold up a fast one's deliveries."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx

from license_server.auth.tokens import Actor
from license_server.clock import Clock
from license_server.config import Settings
from license_server.db.session import create_engine, create_session_factory
from license_server.events.jobs import run_webhook_jobs
from license_server.events.service import EventType
from license_server.runtime import Runtime
from license_server.signing.keys import KeyStore
from license_server.signing.service import Signer
from tests.conftest import PASSPHRASE
from tests.events.conftest import Receiver, delivery_rows, emit, make_endpoint

BURST = 150
SLOW_ANSWER_SECONDS = 0.6
VERY_SLOW_ANSWER_SECONDS = 4.0
# The workers' clock runs this much faster than the wall: a claim (60 s by that clock) lasts 3 s of real time, so
# a claim taken long before its attempt, as a batch claim waiting for a slot is, expires and is taken again.
CLOCK_SPEED = 20
WORKERS = 3


class FastClock:
    """Wall time sped up CLOCK_SPEED times; one clock for every worker thread."""

    def __init__(self) -> None:
        self._start = datetime.now(UTC)
        self._started = time.monotonic()

    def __call__(self) -> datetime:
        return self._start + timedelta(seconds=(time.monotonic() - self._started) * CLOCK_SPEED)


def _worker(settings: Settings, clock: Clock, stop: threading.Event, errors: list[BaseException]) -> None:
    async def run() -> None:
        engine = create_engine(settings)
        runtime = Runtime(
            settings=settings,
            signer=Signer(KeyStore(settings.keys_dir, PASSPHRASE), refresh_seconds=0),
            engine=engine,
            session_factory=create_session_factory(engine),
            clock=clock,
        )
        try:
            async with httpx.AsyncClient(trust_env=False) as client:
                while not stop.is_set():
                    if await run_webhook_jobs(runtime, http_client=client) == 0:
                        await asyncio.sleep(0.05)  # the scheduler's interval, shortened
        finally:
            await runtime.close()

    try:
        asyncio.run(run())
    except BaseException as exc:  # reported by the test
        errors.append(exc)


class Workers:
    """WORKERS delivery workers running the webhook job in a loop until stopped."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self._threads = [
            threading.Thread(target=_worker, args=(settings, clock, self.stop, self.errors), daemon=True)
            for _ in range(WORKERS)
        ]

    async def __aenter__(self) -> Workers:
        for thread in self._threads:
            thread.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self._threads:
            await asyncio.to_thread(thread.join, 30)
        assert self.errors == []


async def wait_until_delivered(runtime: Runtime, workers: Workers, count: int, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not workers.errors:
        rows = await delivery_rows(runtime)
        if len(rows) == count and all(r.state != "pending" for r in rows):
            return
        await asyncio.sleep(0.2)


async def test_three_workers_attempt_each_delivery_of_a_burst_to_a_slow_receiver_once(
    runtime: Runtime, actor: Actor, receiver: Receiver
) -> None:
    """Claims taken for a whole batch expired while its deliveries queued for a slot, and were taken again."""
    slow = await make_endpoint(runtime, actor, receiver.url("/slow"))
    receiver.delay("/slow", SLOW_ANSWER_SECONDS)
    event_ids = await emit(runtime, *[EventType.LICENSE_RENEWED] * BURST)

    async with Workers(runtime.settings, FastClock()) as workers:
        await wait_until_delivered(runtime, workers, BURST)

    sent = Counter(r.webhook_id for r in receiver.to("/slow"))
    assert set(sent) == {f"evt_{event_id}" for event_id in event_ids}
    assert {webhook_id: n for webhook_id, n in sent.items() if n > 1} == {}, "sent more than once"
    rows = await delivery_rows(runtime)
    assert {(r.endpoint_id, r.state, r.attempts) for r in rows} == {(slow.endpoint.id, "succeeded", 1)}


async def test_with_three_workers_a_slow_endpoint_does_not_delay_a_fast_ones_deliveries(
    runtime: Runtime, actor: Actor, receiver: Receiver, clock: Clock
) -> None:
    """The fast endpoint's deliveries are all made before the slow endpoint has answered even once."""
    await make_endpoint(runtime, actor, receiver.url("/slow"), ["license.expired"])
    await make_endpoint(runtime, actor, receiver.url("/fast"), ["license.renewed"])
    receiver.delay("/slow", VERY_SLOW_ANSWER_SECONDS)
    # Interleaved, so that in any order of the backlog slow deliveries come before fast ones.
    await emit(runtime, *[EventType.LICENSE_EXPIRED, EventType.LICENSE_RENEWED] * 20)
    started = time.monotonic()

    async with Workers(runtime.settings, clock) as workers:
        await wait_until_delivered(runtime, workers, 40)

    fast = receiver.to("/fast")
    assert len(fast) == len({r.webhook_id for r in fast}) == 20
    assert len(receiver.to("/slow")) == 20
    fast_done = max(r.at for r in fast) - started
    assert fast_done < VERY_SLOW_ANSWER_SECONDS, f"the fast endpoint's last delivery came after {fast_done:.1f} s"
