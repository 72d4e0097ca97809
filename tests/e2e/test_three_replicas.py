"""Three ``serve`` replicas on one fresh PostgreSQL database, started at the same moment, as a load-balanced deployment
runs them: they all start (migrations take turns), seats stay exact under 200 concurrent activations spread over the
three, a suspension made through one is seen by every replica's polls within the poll cache bound, and each lifecycle
event is recorded once and each webhook delivered once, although all three run the sweep and the webhook job.

And (issue 15): with a poll cache that lives a minute, a suspension through one replica reaches every replica's
polls within PUSH_BOUND_SECONDS (LISTEN/NOTIFY), and the per-license-key and failed-auth limits are one limit for
the three together.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import POSTGRES_ADMIN_URL
from tests.e2e.conftest import Cli, Server, free_port, spawn_server, wait_until_ready

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

REPLICAS = 3
SEATS = 10
ACTIVATIONS = 200
POLL_CACHE_SECONDS = 2.0
POLL_MARGIN_SECONDS = 1.5  # a poll every 0.1 s, a loaded 2-core machine, a cache refresh in flight
SOON_SECONDS = 8  # the second license expires this long after it is issued: the sweep must see it once
SWEEP_INTERVAL_SECONDS = 0.5
SETTLE_SECONDS = 2.0  # after the last expected event and delivery: time for a duplicate to show up


@pytest.fixture
def fresh_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """An empty PostgreSQL database: no schema until the replicas create it."""
    request.getfixturevalue("postgres_database")  # skips or fails exactly as the other PostgreSQL tests do
    import asyncpg

    name = f"ls_replicas_{os.getpid()}_{uuid.uuid4().hex[:6]}"

    async def admin(statement: str) -> None:
        connection = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


class WebhookReceiver:
    """A local receiver that answers 200 at once and counts deliveries by their webhook-id."""

    def __init__(self) -> None:
        self.received: Counter[str] = Counter()
        lock = threading.Lock()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                with lock:
                    received[self.headers.get("webhook-id", "")] += 1
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def claims(document: str) -> dict[str, Any]:
    payload = document.split(".")[1]
    parsed: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return parsed


async def rows(database_url: str, query: str) -> list[tuple[Any, ...]]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            return [tuple(row) for row in (await connection.execute(text(query))).all()]
    finally:
        await engine.dispose()


async def eventually(check: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {seconds:.0f} s")
        await asyncio.sleep(0.2)


async def poll_until_suspended(http: httpx.AsyncClient, token: str, since: float, bound: float) -> float:
    """Seconds from the suspension until this replica's poll says so (or past the bound, to report it)."""
    while True:
        response = await http.get("/v1/license", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text
        seen = claims(response.text)
        if (seen["status"], seen["status_reason"]) == ("inactive", "SUSPENDED"):
            return time.monotonic() - since
        if time.monotonic() - since > bound + 5:
            return time.monotonic() - since
        await asyncio.sleep(0.1)


async def scenario(servers: list[Server], owner_token: str, database_url: str, receiver: WebhookReceiver) -> None:
    admin = {"Authorization": f"Bearer {owner_token}"}
    limits = httpx.Limits(max_connections=ACTIVATIONS, max_keepalive_connections=ACTIVATIONS)
    clients = [httpx.AsyncClient(base_url=s.url, timeout=30, limits=limits) for s in servers]
    try:
        first, second, third = clients
        endpoint = await first.post("/v1/admin/webhooks", json={"url": receiver.url, "event_types": []}, headers=admin)
        assert endpoint.status_code == 201, endpoint.text
        customer = await second.post("/v1/admin/customers", json={"name": "Replica Corp"}, headers=admin)
        assert customer.status_code == 201, customer.text
        customer_id = customer.json()["id"]
        seats = await third.post(
            "/v1/admin/licenses",
            json={"customer_id": customer_id, "expires_at": "2035-01-01", "terms": {"max_activations": SEATS}},
            headers=admin,
        )
        assert seats.status_code == 201, seats.text
        soon_at = datetime.now(UTC) + timedelta(seconds=SOON_SECONDS)
        soon = await first.post(
            "/v1/admin/licenses",
            json={"customer_id": customer_id, "expires_at": soon_at.isoformat(), "terms": {"notice_days": 0}},
            headers=admin,
        )
        assert soon.status_code == 201, soon.text
        seats_id, soon_id = uuid.UUID(seats.json()["id"]), uuid.UUID(soon.json()["id"])

        # Seats: 200 deployments at once, spread over the three replicas, on a 10-seat license.
        burst = time.monotonic()
        answers = await asyncio.gather(
            *(
                clients[i % REPLICAS].post(
                    "/v1/activations", json={"license_key": seats.json()["key"], "fingerprint": f"node-{i}"}
                )
                for i in range(ACTIVATIONS)
            )
        )
        print(f"{ACTIVATIONS} concurrent activations answered in {time.monotonic() - burst:.1f} s")
        created = [a for a in answers if a.status_code == 201]
        refused = Counter((a.status_code, a.json().get("code")) for a in answers if a.status_code != 201)
        assert len(created) == SEATS, (len(created), refused)
        assert refused == Counter({(409, "too_many_activations"): ACTIVATIONS - SEATS})
        live = await rows(
            database_url,
            f"SELECT count(*) FROM activations WHERE license_id = '{seats_id}' AND deactivated_at IS NULL",
        )
        assert live == [(SEATS,)]

        # Suspension through one replica: every replica's polls say so within the poll cache bound.
        token = created[0].json()["deployment_token"]
        for http in clients:  # each replica has the license in its caches
            warm = await http.get("/v1/license", headers={"Authorization": f"Bearer {token}"})
            assert claims(warm.text)["status"] == "active", warm.text
        suspended = await second.post(
            f"/v1/admin/licenses/{seats_id}/actions/suspend", json={"reason": "replica test"}, headers=admin
        )
        assert suspended.status_code == 200, suspended.text
        since = time.monotonic()
        bound = POLL_CACHE_SECONDS + POLL_MARGIN_SECONDS
        seen_after = await asyncio.gather(*(poll_until_suspended(http, token, since, bound) for http in clients))
        print(
            f"\nsuspension seen by each replica after {', '.join(f'{s:.2f}' for s in seen_after)} s (bound {bound} s)"
        )
        assert all(s <= bound for s in seen_after), seen_after

        # The second license expires: all three sweep, exactly one records it.
        async def expired() -> bool:
            found = await rows(
                database_url, f"SELECT 1 FROM events WHERE type = 'license.expired' AND license_id = '{soon_id}'"
            )
            return bool(found)

        await eventually(expired, SOON_SECONDS + 15, "license.expired")

        async def all_delivered() -> bool:
            events = await rows(database_url, "SELECT id FROM events")
            return {f"evt_{e[0]}" for e in events} <= set(receiver.received)

        await eventually(all_delivered, 20, "every webhook delivery")
        print(f"every event delivered {time.monotonic() - since:.1f} s after the suspension")
    finally:
        for http in clients:
            await http.aclose()
    await asyncio.sleep(SETTLE_SECONDS)

    events = await rows(database_url, "SELECT id, type, license_id, activation_id FROM events ORDER BY id")
    by_subject = Counter((type_, license_id, activation_id) for _, type_, license_id, activation_id in events)
    assert [subject for subject, n in by_subject.items() if n > 1] == [], "lifecycle events recorded twice"
    types = Counter(type_ for _, type_, license_id, _ in events if license_id in {seats_id, soon_id})
    assert types == Counter(
        {"activation.created": SEATS, "license.activated": 1, "license.suspended": 1, "license.expired": 1}
    ), types
    assert set(receiver.received) == {f"evt_{e[0]}" for e in events}
    assert [webhook_id for webhook_id, n in receiver.received.items() if n != 1] == [], "webhooks delivered twice"


def test_three_replicas_started_together_keep_seats_staleness_events_and_webhooks_exact(
    cli: Cli, fresh_database: str
) -> None:
    cli.run("init", "--dev")  # keys (and a SQLite file the replicas do not use)
    env = {
        **cli.env,
        "LICENSE_SERVER_DATABASE_URL": fresh_database,
        "LICENSE_SERVER_POLL_CACHE_SECONDS": str(POLL_CACHE_SECONDS),
        "LICENSE_SERVER_SWEEP_INTERVAL_SECONDS": str(SWEEP_INTERVAL_SECONDS),
        "LICENSE_SERVER_WEBHOOK_INTERVAL_SECONDS": "0.5",
        "LICENSE_SERVER_CHECKIN_FLUSH_SECONDS": "1",
        # Every client here is 127.0.0.1: the per-address limits of activate would refuse the burst.
        "LICENSE_SERVER_RATE_LIMIT_PER_ADDRESS": "1000000",
        "LICENSE_SERVER_RATE_LIMIT_PER_LICENSE_KEY": "1000000",
        # The receiver is on loopback, which webhooks may reach only when allowed.
        "LICENSE_SERVER_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        "LICENSE_SERVER_LOG_LEVEL": "WARNING",
    }
    # Started at the same moment on an empty database: all three must come up (migrations take turns).
    started = time.monotonic()
    servers = [spawn_server(cli, free_port(), env=env) for _ in range(REPLICAS)]
    try:
        for server in servers:
            wait_until_ready(server, seconds=60)
        took = time.monotonic() - started
        print(f"\n{REPLICAS} replicas started together on an empty database, all ready after {took:.1f} s")
        owner_token = Cli(cwd=cli.cwd, env=env).json("tokens", "create", "--role", "owner", "--name", "replicas")[
            "token"
        ]
        with WebhookReceiver() as receiver:
            asyncio.run(scenario(servers, owner_token, fresh_database, receiver))
        assert all(server.process.poll() is None for server in servers), "a replica died during the test"
    finally:
        for server in servers:
            server.process.terminate()
        for server in servers:
            server.process.wait(timeout=15)


# -- one limit and pushed invalidation across replicas (issue 15) ---------------------------------------------------
LONG_CACHE_SECONDS = 60.0  # the most allowed, far past the push bound: a change seen sooner was pushed, not expired
PUSH_BOUND_SECONDS = 2.0  # NOTIFY delivery (milliseconds) + a poll every 0.1 s + a loaded 2-core machine
KEY_LIMIT = 6
FAILED_AUTH_LIMIT = 6


async def shared_state_scenario(servers: list[Server], owner_token: str) -> None:
    admin = {"Authorization": f"Bearer {owner_token}"}
    clients = [httpx.AsyncClient(base_url=s.url, timeout=30) for s in servers]
    try:
        first = clients[0]
        customer = await first.post("/v1/admin/customers", json={"name": "Shared Corp"}, headers=admin)
        assert customer.status_code == 201, customer.text
        issued = await first.post(
            "/v1/admin/licenses",
            json={"customer_id": customer.json()["id"], "expires_at": "2035-01-01", "terms": {"max_activations": 3}},
            headers=admin,
        )
        assert issued.status_code == 201, issued.text
        key = issued.json()["key"]
        activated = await first.post("/v1/activations", json={"license_key": key, "fingerprint": "node-0"})
        assert activated.status_code == 201, activated.text
        token = activated.json()["deployment_token"]

        # One rate limit: the license key may be used KEY_LIMIT times a minute in all, whichever replica answers.
        # (The activation above was its first use.)
        answers = []
        for i in range(3 * KEY_LIMIT):
            validated = await clients[i % REPLICAS].post(
                "/v1/licenses/validate", json={"license_key": key, "nonce": f"n-{i}", "fingerprint": "node-0"}
            )
            answers.append(validated.status_code)
        assert answers.count(200) == KEY_LIMIT - 1, answers
        assert answers[: KEY_LIMIT - 1] == [200] * (KEY_LIMIT - 1), answers
        assert set(answers[KEY_LIMIT - 1 :]) == {429}, answers
        print(f"\none per-license-key limit of {KEY_LIMIT} across {REPLICAS} replicas: {answers}")

        # One failed-auth limit: different wrong deployment tokens spread over the replicas count together.
        for i in range(FAILED_AUTH_LIMIT):
            wrong = await clients[i % REPLICAS].get("/v1/license", headers={"Authorization": f"Bearer lsd_wrong{i}"})
            assert wrong.status_code == 401, wrong.text

        async def every_replica_refuses() -> bool:
            refused = [
                (await http.get("/v1/license", headers={"Authorization": f"Bearer {token}"})).status_code
                for http in clients
            ]
            return refused == [429] * REPLICAS

        await eventually(every_replica_refuses, PUSH_BOUND_SECONDS, "the failed-auth block on every replica")

    finally:
        for http in clients:
            await http.aclose()


async def suspension_scenario(servers: list[Server], owner_token: str) -> list[float]:
    """Every replica has the license cached for LONG_CACHE_SECONDS; a suspension through one reaches all."""
    admin = {"Authorization": f"Bearer {owner_token}"}
    clients = [httpx.AsyncClient(base_url=s.url, timeout=30) for s in servers]
    try:
        first, second, _ = clients
        customer = await first.post("/v1/admin/customers", json={"name": "Pushed Corp"}, headers=admin)
        issued = await first.post(
            "/v1/admin/licenses",
            json={"customer_id": customer.json()["id"], "expires_at": "2035-01-01"},
            headers=admin,
        )
        activated = await first.post("/v1/activations", json={"license_key": issued.json()["key"], "fingerprint": "a"})
        assert activated.status_code == 201, activated.text
        token = activated.json()["deployment_token"]
        for http in clients:
            warm = await http.get("/v1/license", headers={"Authorization": f"Bearer {token}"})
            assert claims(warm.text)["status"] == "active", warm.text
        suspended = await second.post(
            f"/v1/admin/licenses/{issued.json()['id']}/actions/suspend", json={"reason": "pushed"}, headers=admin
        )
        assert suspended.status_code == 200, suspended.text
        since = time.monotonic()
        return list(
            await asyncio.gather(*(poll_until_suspended(http, token, since, PUSH_BOUND_SECONDS) for http in clients))
        )
    finally:
        for http in clients:
            await http.aclose()


def test_three_replicas_enforce_one_rate_limit_and_see_a_suspension_pushed_to_all(
    cli: Cli, fresh_database: str
) -> None:
    """The poll cache lives LONG_CACHE_SECONDS, yet a suspension made through one replica is seen by every
    replica's polls within PUSH_BOUND_SECONDS (LISTEN/NOTIFY); the per-license-key and failed-auth limits hold for
    the three together, not per replica."""
    cli.run("init", "--dev")
    env = {
        **cli.env,
        "LICENSE_SERVER_DATABASE_URL": fresh_database,
        "LICENSE_SERVER_POLL_CACHE_SECONDS": str(LONG_CACHE_SECONDS),
        "LICENSE_SERVER_RATE_LIMIT_PER_ADDRESS": "1000000",
        "LICENSE_SERVER_RATE_LIMIT_PER_LICENSE_KEY": str(KEY_LIMIT),
        "LICENSE_SERVER_RATE_LIMIT_FAILED_AUTH_PER_ADDRESS": str(FAILED_AUTH_LIMIT),
        "LICENSE_SERVER_LOG_LEVEL": "WARNING",
    }
    servers = [spawn_server(cli, free_port(), env=env) for _ in range(REPLICAS)]
    try:
        for server in servers:
            wait_until_ready(server, seconds=60)
        owner_token = Cli(cwd=cli.cwd, env=env).json("tokens", "create", "--role", "owner", "--name", "shared")["token"]
        seen_after = asyncio.run(suspension_scenario(servers, owner_token))
        print(f"\nsuspension pushed to each replica after {', '.join(f'{s:.2f}' for s in seen_after)} s")
        assert all(s <= PUSH_BOUND_SECONDS for s in seen_after), seen_after
        asyncio.run(shared_state_scenario(servers, owner_token))
        assert all(server.process.poll() is None for server in servers), "a replica died during the test"
    finally:
        for server in servers:
            server.process.terminate()
        for server in servers:
            server.process.wait(timeout=15)
