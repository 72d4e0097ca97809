"""Fan-out and signed delivery with retries, on SQLite and PostgreSQL, against a real HTTP receiver."""

from __future__ import annotations

import asyncio
import base64
import socket
import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.tokens import Actor
from license_server.events.service import EventType
from license_server.events.webhooks import BACKOFF_BASE, BACKOFF_FLOOR, fan_out, update_endpoint
from license_server.runtime import Runtime
from tests.conftest import MovableClock
from tests.events.conftest import (
    Receiver,
    deliver,
    delivery_count,
    delivery_rows,
    emit,
    make_endpoint,
    signed_correctly,
    verify,
)


async def run_fan_out(runtime: Runtime, **options: Any) -> int:
    async with runtime.session_factory() as session:
        return await fan_out(session, clock=runtime.clock, **options)


async def run_delivery(runtime: Runtime, client: httpx.AsyncClient, **options: Any) -> int:
    return await deliver(runtime, client, **options)


def iso(clock: MovableClock) -> str:
    return clock.now.isoformat().replace("+00:00", "Z")


async def test_emitted_events_are_delivered_with_valid_signatures(
    runtime: Runtime, actor: Actor, receiver: Receiver, http_client: httpx.AsyncClient, clock: MovableClock
) -> None:
    created = await make_endpoint(runtime, actor, receiver.url("/hook"))
    assert created.secret.startswith("whsec_")
    assert 24 <= len(base64.b64decode(created.secret.removeprefix("whsec_"))) <= 32
    license_id, activation_id = uuid.uuid4(), uuid.uuid4()
    [revoked] = await emit(runtime, EventType.LICENSE_REVOKED, license_id=license_id, data={"reason": "fraud"})
    [activated] = await emit(
        runtime,
        EventType.ACTIVATION_CREATED,
        license_id=license_id,
        activation_id=activation_id,
        data={"fingerprint": "fp-1", "hostname": "build-01"},
    )

    assert await run_fan_out(runtime) == 2
    assert await run_delivery(runtime, http_client) == 2

    received = receiver.to("/hook")
    payloads = {request.webhook_id: verify(created.secret, request) for request in received}
    assert payloads == {
        f"evt_{revoked}": {
            "type": "license.revoked",
            "timestamp": iso(clock),
            "data": {"reason": "fraud", "event_id": revoked, "license_id": str(license_id), "activation_id": None},
        },
        f"evt_{activated}": {
            "type": "activation.created",
            "timestamp": iso(clock),
            "data": {
                "fingerprint": "fp-1",
                "hostname": "build-01",
                "event_id": activated,
                "license_id": str(license_id),
                "activation_id": str(activation_id),
            },
        },
    }
    for request in received:
        assert request.headers["content-type"] == "application/json"
        assert request.headers["webhook-timestamp"] == str(int(clock.now.timestamp()))
        assert request.headers["webhook-signature"].startswith("v1,")
    rows = await delivery_rows(runtime)
    assert [(r.state, r.attempts, r.last_status_code, r.last_error) for r in rows] == [("succeeded", 1, 204, None)] * 2
    assert all(r.delivered_at == clock.now and r.next_attempt_at is None for r in rows)
    # Nothing is sent twice.
    assert await run_fan_out(runtime) == 0
    assert await run_delivery(runtime, http_client) == 0
    assert len(receiver.requests) == 2


async def test_an_endpoint_gets_only_the_event_types_it_asked_for(
    runtime: Runtime, actor: Actor, receiver: Receiver, http_client: httpx.AsyncClient
) -> None:
    await make_endpoint(runtime, actor, receiver.url("/some"), ["license.revoked", "license.suspended"])
    await make_endpoint(runtime, actor, receiver.url("/all"))
    await emit(runtime, EventType.LICENSE_REVOKED, EventType.LICENSE_RENEWED, EventType.LICENSE_SUSPENDED)

    assert await run_fan_out(runtime) == 5
    assert await run_delivery(runtime, http_client) == 5

    def types(path: str) -> list[str]:
        return sorted(r.body.decode().split('"type":"')[1].split('"')[0] for r in receiver.to(path))

    assert types("/some") == ["license.revoked", "license.suspended"]
    assert types("/all") == ["license.renewed", "license.revoked", "license.suspended"]


async def test_an_endpoint_created_after_an_event_does_not_get_it(
    runtime: Runtime, actor: Actor, receiver: Receiver, http_client: httpx.AsyncClient
) -> None:
    await emit(runtime, EventType.LICENSE_EXPIRED)
    await make_endpoint(runtime, actor, receiver.url("/late"))
    [after] = await emit(runtime, EventType.LICENSE_LOST)

    assert await run_fan_out(runtime) == 1
    assert await run_delivery(runtime, http_client) == 1
    assert [r.webhook_id for r in receiver.to("/late")] == [f"evt_{after}"]


async def test_fan_out_twice_creates_each_delivery_once(runtime: Runtime, actor: Actor, receiver: Receiver) -> None:
    await make_endpoint(runtime, actor, receiver.url("/a"))
    await make_endpoint(runtime, actor, receiver.url("/b"))
    await emit(runtime, *[EventType.LICENSE_RENEWED] * 5)

    assert await run_fan_out(runtime) == 10
    assert await run_fan_out(runtime) == 0
    await emit(runtime, EventType.LICENSE_REVOKED)
    assert await run_fan_out(runtime) == 2
    assert await run_fan_out(runtime) == 0
    assert await delivery_count(runtime) == 12


async def test_concurrent_fan_outs_create_each_delivery_once(
    runtime: Runtime, actor: Actor, receiver: Receiver
) -> None:
    """Two replicas at once: the one whose cursor advance loses the race rolls back everything it wrote."""
    endpoints = [
        await make_endpoint(runtime, actor, receiver.url("/1")),
        await make_endpoint(runtime, actor, receiver.url("/2")),
        await make_endpoint(runtime, actor, receiver.url("/3"), ["license.revoked"]),
    ]
    expected = 0
    for _ in range(3):
        await emit(runtime, *[EventType.LICENSE_RENEWED] * 20, *[EventType.LICENSE_REVOKED] * 5)
        expected += 25 + 25 + 5
        async with runtime.session_factory() as one, runtime.session_factory() as two:
            counts = await asyncio.gather(fan_out(one, clock=runtime.clock), fan_out(two, clock=runtime.clock))
        assert sum(counts) == 55, counts

    rows = await delivery_rows(runtime)
    assert len(rows) == expected
    assert len({(r.endpoint_id, r.event_id) for r in rows}) == expected
    assert {r.endpoint_id for r in rows} == {e.endpoint.id for e in endpoints}


async def test_fan_out_works_through_a_backlog_in_batches(runtime: Runtime, actor: Actor, receiver: Receiver) -> None:
    created = await make_endpoint(runtime, actor, receiver.url("/backlog"))
    ids = await emit(runtime, *[EventType.ACTIVATION_LOST] * 25)

    assert [await run_fan_out(runtime, batch_size=10) for _ in range(4)] == [10, 10, 5, 0]
    assert [r.event_id for r in await delivery_rows(runtime, created.endpoint.id)] == ids


async def test_retries_back_off_with_jitter_then_succeed_with_the_same_webhook_id(
    runtime: Runtime, actor: Actor, receiver: Receiver, http_client: httpx.AsyncClient, clock: MovableClock
) -> None:
    created = await make_endpoint(runtime, actor, receiver.url("/flaky"))
    receiver.fail("/flaky", 3)
    [event_id] = await emit(runtime, EventType.LICENSE_SUSPENDED, license_id=uuid.uuid4())
    await run_fan_out(runtime)

    for attempt in (1, 2, 3):
        assert await run_delivery(runtime, http_client) == 1
        [row] = await delivery_rows(runtime)
        assert (row.state, row.attempts, row.last_status_code) == ("pending", attempt, 500)
        assert row.last_error == "HTTP 500 Internal Server Error"
        assert row.next_attempt_at is not None
        assert BACKOFF_FLOOR <= row.next_attempt_at - clock.now <= BACKOFF_BASE * 2 ** (attempt - 1)
        assert await run_delivery(runtime, http_client) == 0  # not due yet
        clock.now = row.next_attempt_at

    assert await run_delivery(runtime, http_client) == 1
    [row] = await delivery_rows(runtime)
    assert (row.state, row.attempts, row.last_status_code, row.last_error) == ("succeeded", 4, 204, None)
    assert row.delivered_at == clock.now

    received = receiver.to("/flaky")
    assert [r.status for r in received] == [500, 500, 500, 204]
    assert {r.webhook_id for r in received} == {f"evt_{event_id}"}
    assert len({r.body for r in received}) == 1
    timestamps = [int(r.headers["webhook-timestamp"]) for r in received]
    assert timestamps == sorted(set(timestamps))  # each attempt is stamped with its own time
    assert all(signed_correctly(created.secret, r) for r in received)


async def test_retry_delays_are_spread_within_doubling_bounds(
    runtime: Runtime, actor: Actor, receiver: Receiver, http_client: httpx.AsyncClient, clock: MovableClock
) -> None:
    await make_endpoint(runtime, actor, receiver.url("/down"))
    receiver.fail("/down", 1000)
    await emit(runtime, *[EventType.USAGE_OVER_LIMIT] * 30)
    await run_fan_out(runtime)

    for attempt in (1, 2, 3):
        ceiling = (BACKOFF_BASE * 2 ** (attempt - 1)).total_seconds()
        assert await run_delivery(runtime, http_client, limit=100) == 30
        rows = await delivery_rows(runtime)
        delays = [(r.next_attempt_at - clock.now).total_seconds() for r in rows if r.next_attempt_at]
        assert len(delays) == 30
        assert all(BACKOFF_FLOOR.total_seconds() <= d <= ceiling for d in delays)
        assert len(set(delays)) >= 10  # jittered: the retries do not all arrive together
        assert max(delays) > ceiling / 2  # and the whole, doubled, range is used
        clock.advance(timedelta(seconds=ceiling))
    assert {r.attempts for r in await delivery_rows(runtime)} == {3}


async def test_a_delivery_fails_after_its_last_attempt(
    runtime: Runtime, actor: Actor, receiver: Receiver, http_client: httpx.AsyncClient, clock: MovableClock
) -> None:
    await make_endpoint(runtime, actor, receiver.url("/dead"))
    receiver.fail("/dead", 10, status=503)
    await emit(runtime, EventType.LICENSE_EXPIRED)
    await run_fan_out(runtime)

    for _ in range(3):
        assert await run_delivery(runtime, http_client, max_attempts=3) == 1
        clock.advance(timedelta(hours=1))
    [row] = await delivery_rows(runtime)
    assert (row.state, row.attempts, row.last_status_code, row.next_attempt_at) == ("failed", 3, 503, None)
    clock.advance(timedelta(days=2))
    assert await run_delivery(runtime, http_client, max_attempts=3) == 0
    assert len(receiver.to("/dead")) == 3


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_errors_timeouts_and_redirects_are_retried_without_affecting_other_endpoints(
    runtime: Runtime, actor: Actor, receiver: Receiver, http_client: httpx.AsyncClient
) -> None:
    refused = await make_endpoint(runtime, actor, f"http://127.0.0.1:{_closed_port()}/hook")
    slow = await make_endpoint(runtime, actor, receiver.url("/slow"))
    moved = await make_endpoint(runtime, actor, receiver.url("/moved"))
    healthy = await make_endpoint(runtime, actor, receiver.url("/ok"))
    receiver.delay("/slow", 1.0)
    receiver.fail("/moved", 1, status=302)
    await emit(runtime, EventType.LICENSE_REINSTATED)
    assert await run_fan_out(runtime) == 4

    assert await run_delivery(runtime, http_client, request_timeout=0.3) == 4

    rows = {r.endpoint_id: r for r in await delivery_rows(runtime)}
    outcome = {name: rows[e.endpoint.id] for name, e in [("refused", refused), ("slow", slow), ("moved", moved)]}
    assert all(r.state == "pending" and r.attempts == 1 and r.next_attempt_at for r in outcome.values())
    assert outcome["refused"].last_status_code is None
    assert (outcome["refused"].last_error or "").startswith("ConnectError")
    assert (outcome["slow"].last_status_code, outcome["slow"].last_error) == (None, "timed out after 0.3 s")
    assert (outcome["moved"].last_status_code, outcome["moved"].last_error) == (302, "HTTP 302 Found")
    assert receiver.to("/elsewhere") == []  # redirects are not followed
    assert (rows[healthy.endpoint.id].state, rows[healthy.endpoint.id].attempts) == ("succeeded", 1)
    for created in (refused, slow, moved):
        error = rows[created.endpoint.id].last_error or ""
        assert created.secret not in error
        assert created.secret.removeprefix("whsec_") not in error


async def test_concurrent_deliveries_send_each_attempt_once(
    runtime: Runtime, actor: Actor, receiver: Receiver, http_client: httpx.AsyncClient
) -> None:
    await make_endpoint(runtime, actor, receiver.url("/once"))
    await emit(runtime, *[EventType.LICENSE_RENEWED] * 20)
    await run_fan_out(runtime)

    counts = await asyncio.gather(run_delivery(runtime, http_client), run_delivery(runtime, http_client))

    assert sum(counts) == 20
    received = receiver.to("/once")
    assert len(received) == 20
    assert len({r.webhook_id for r in received}) == 20
    assert {r.state for r in await delivery_rows(runtime)} == {"succeeded"}


async def test_a_disabled_endpoint_is_paused_and_catches_up_when_enabled(
    runtime: Runtime, actor: Actor, receiver: Receiver, http_client: httpx.AsyncClient, session: AsyncSession
) -> None:
    created = await make_endpoint(runtime, actor, receiver.url("/paused"))
    await emit(runtime, EventType.LICENSE_RENEWED)
    assert await run_fan_out(runtime) == 1
    await update_endpoint(session, actor=actor, endpoint_id=created.endpoint.id, enabled=False, clock=runtime.clock)

    await emit(runtime, EventType.LICENSE_REVOKED)
    assert await run_fan_out(runtime) == 0
    assert await run_delivery(runtime, http_client) == 0

    await update_endpoint(session, actor=actor, endpoint_id=created.endpoint.id, enabled=True, clock=runtime.clock)
    assert await run_fan_out(runtime) == 1
    assert await run_delivery(runtime, http_client) == 2
    assert len(receiver.to("/paused")) == 2
