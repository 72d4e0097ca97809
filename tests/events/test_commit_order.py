"""PostgreSQL takes an event's id at insert but shows it at commit, so ids can become visible out of order.

Fan-out must not move an endpoint's cursor past an event whose transaction is still open: it would never be sent.
It reads events by writing transaction below the snapshot's xmin instead of locking the table (events/webhooks.py).
(SQLite has one writer at a time, so there ids always become visible in order.)
"""

from __future__ import annotations

import asyncio

import pytest

from license_server.auth.tokens import Actor
from license_server.events.service import EventType, emit_event
from license_server.events.webhooks import fan_out
from license_server.runtime import Runtime
from tests.events.conftest import Receiver, delivery_rows, emit, make_endpoint

pytestmark = pytest.mark.postgres


@pytest.fixture
def backend() -> str:
    return "postgres"


async def run_fan_out(runtime: Runtime) -> int:
    async with runtime.session_factory() as session:
        return await fan_out(session, clock=runtime.clock)


async def test_an_event_committed_after_a_later_one_is_still_delivered(
    runtime: Runtime, actor: Actor, receiver: Receiver
) -> None:
    created = await make_endpoint(runtime, actor, receiver.url("/ordered"))
    async with runtime.session_factory() as slow_writer:
        early = emit_event(slow_writer, type=EventType.LICENSE_EXPIRED, clock=runtime.clock)
        await slow_writer.flush()  # the id is taken; the transaction stays open
        [later] = await emit(runtime, EventType.LICENSE_RENEWED)
        assert later > early.id

        # While it is open: fan-out neither waits nor locks, and passes nothing by (the later event waits too).
        assert await run_fan_out(runtime) == 0
        assert await delivery_rows(runtime) == []

        await slow_writer.commit()
    assert await run_fan_out(runtime) == 2
    assert [r.event_id for r in await delivery_rows(runtime, created.endpoint.id)] == [early.id, later]


async def test_an_open_event_writer_does_not_block_fan_out_of_what_committed_before_it(
    runtime: Runtime, actor: Actor, receiver: Receiver
) -> None:
    created = await make_endpoint(runtime, actor, receiver.url("/before"))
    [before] = await emit(runtime, EventType.LICENSE_RENEWED)
    async with runtime.session_factory() as slow_writer:
        emit_event(slow_writer, type=EventType.LICENSE_EXPIRED, clock=runtime.clock)
        await slow_writer.flush()
        assert await asyncio.wait_for(run_fan_out(runtime), 5) == 1  # at once: no lock to wait for
        await slow_writer.rollback()  # a rolled-back event is never sent, and holds nothing back once gone
    [after] = await emit(runtime, EventType.LICENSE_SUSPENDED)
    assert await run_fan_out(runtime) == 1
    assert [r.event_id for r in await delivery_rows(runtime, created.endpoint.id)] == [before, after]


async def test_concurrent_event_writers_and_fan_outs_deliver_every_event_to_each_endpoint_once(
    runtime: Runtime, actor: Actor, receiver: Receiver
) -> None:
    """Eight writers commit events in overlapping transactions (ids taken early, committed late and out of order)
    while three fan-outs run over and over, as three replicas would: in the end each endpoint has exactly one
    delivery per event, none skipped, none doubled."""
    endpoints = [await make_endpoint(runtime, actor, receiver.url(f"/e{i}")) for i in range(2)]
    writing = True

    async def writer(n: int) -> list[int]:
        ids: list[int] = []
        for round_ in range(12):
            async with runtime.session_factory() as session:
                events = [emit_event(session, type=EventType.LICENSE_RENEWED, clock=runtime.clock) for _ in range(3)]
                await session.flush()  # ids taken ...
                await asyncio.sleep(0.001 * ((n * 7 + round_) % 5))  # ... and committed later, out of order
                await session.commit()
                ids += [event.id for event in events]
        return ids

    async def fanner() -> int:
        created = 0
        while writing:
            created += await run_fan_out(runtime)
            await asyncio.sleep(0)
        return created

    fanners = [asyncio.create_task(fanner()) for _ in range(3)]
    written = [event_id for ids in await asyncio.gather(*(writer(n) for n in range(8))) for event_id in ids]
    writing = False
    await asyncio.gather(*fanners)
    while await run_fan_out(runtime):  # what the last runs left for the next one
        pass
    assert len(written) == 8 * 12 * 3
    for endpoint in endpoints:
        delivered = [r.event_id for r in await delivery_rows(runtime, endpoint.endpoint.id)]
        assert sorted(delivered) == sorted(written)  # every event once: none skipped, none doubled
