"""PostgreSQL takes an event's id at insert but shows it at commit, so ids can become visible out of order.

Fan-out must not move an endpoint's cursor past an event whose transaction is still open: it would never be sent.
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

        # Held open past fan-out's lock timeout: the run is skipped, the cursor stays before the open event.
        assert await run_fan_out(runtime) == 0
        assert await delivery_rows(runtime) == []

        # Committed while fan-out waits: it is included.
        waiting = asyncio.create_task(run_fan_out(runtime))
        await asyncio.sleep(0.1)
        await slow_writer.commit()
        assert await waiting == 2

    assert [r.event_id for r in await delivery_rows(runtime, created.endpoint.id)] == [early.id, later]
