"""A real HTTP receiver on 127.0.0.1 that records what it is sent and fails when told to; helpers for events.

Webhooks are sent to public addresses only; these tests' runtimes allow loopback explicitly, as an operator with an
on-premises receiver would (LICENSE_SERVER_WEBHOOK_ALLOWED_NETWORKS). The tests of that rule use none.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_network
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from standardwebhooks.webhooks import Webhook

from license_server.auth.tokens import Actor
from license_server.config import Settings
from license_server.events.egress import Egress, IPNetwork
from license_server.events.models import WebhookDelivery
from license_server.events.service import EventType, emit_event
from license_server.events.webhooks import EndpointWithSecret, create_endpoint, deliver_due
from license_server.runtime import Runtime
from tests.conftest import MovableClock

LOOPBACK: list[IPNetwork] = [ip_network("127.0.0.0/8"), ip_network("::1/128")]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The shared settings, with loopback allowed as a webhook destination: the receiver listens there."""
    return settings.model_copy(update={"webhook_allowed_networks": LOOPBACK})


@pytest.fixture
def clock() -> MovableClock:
    """Wall time, so standardwebhooks' check that a timestamp is within 5 minutes of now holds."""
    return MovableClock(datetime.now(UTC).replace(microsecond=0))


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    at: float = field(default_factory=time.monotonic)  # when it arrived

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Receiver:
    """Answers 204, or what ``respond`` says for a path: a status for the next N requests, and a delay."""

    port: int = 0
    requests: list[Received] = field(default_factory=list)
    _failures: dict[str, list[int]] = field(default_factory=dict)
    _delays: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def fail(self, path: str, times: int, status: int = 500) -> None:
        with self._lock:
            self._failures.setdefault(path, []).extend([status] * times)

    def delay(self, path: str, seconds: float) -> None:
        self._delays[path] = seconds

    def to(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, float]:
        with self._lock:
            queued = self._failures.get(path)
            status = queued.pop(0) if queued else 204
            self.requests.append(Received(path, headers, body, status))
            return status, self._delays.get(path, 0.0)


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, delay = receiver.answer(self.path, headers, body)
            if delay:
                time.sleep(delay)
            self.send_response(status)
            if status in (301, 302, 307, 308):
                self.send_header("location", receiver.url("/elsewhere"))
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(found))
    server.daemon_threads = True
    found.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


def verify(secret: str, request: Received) -> Any:
    """The whole Standard Webhooks check, by an independent implementation (signature and timestamp)."""
    return Webhook(secret).verify(request.body, request.headers)


def signed_correctly(secret: str, request: Received) -> bool:
    """The signature alone, for attempts whose timestamp a moved clock put outside the 5-minute window."""
    timestamp = datetime.fromtimestamp(int(request.headers["webhook-timestamp"]), UTC)
    expected = Webhook(secret).sign(request.webhook_id, timestamp, request.body.decode())
    return expected in request.headers["webhook-signature"].split(" ")


async def emit(
    runtime: Runtime,
    *types: EventType,
    license_id: uuid.UUID | None = None,
    activation_id: uuid.UUID | None = None,
    data: dict[str, Any] | None = None,
) -> list[int]:
    """Emit events in one committed transaction, as a service would; returns their ids."""
    async with runtime.session_factory() as session:
        events = [
            emit_event(
                session, type=t, license_id=license_id, activation_id=activation_id, data=data, clock=runtime.clock
            )
            for t in types
        ]
        await session.commit()
        return [e.id for e in events]


async def make_endpoint(
    runtime: Runtime, actor: Actor, url: str, event_types: Sequence[str] = ()
) -> EndpointWithSecret:
    async with runtime.session_factory() as session:
        return await create_endpoint(
            session,
            actor=actor,
            url=url,
            event_types=event_types,
            secret_box=runtime.webhook_secret_box,
            allowed_networks=runtime.settings.webhook_allowed_networks,
            clock=runtime.clock,
        )


async def deliver(runtime: Runtime, client: httpx.AsyncClient, **options: Any) -> int:
    """One delivery run of ``runtime``, to the destinations its settings allow (unless ``egress`` says otherwise)."""
    options.setdefault("egress", Egress(runtime.settings.webhook_allowed_networks))
    return await deliver_due(
        runtime.session_factory,
        http_client=client,
        secret_box=runtime.webhook_secret_box,
        clock=runtime.clock,
        **options,
    )


async def delivery_rows(runtime: Runtime, endpoint_id: uuid.UUID | None = None) -> list[WebhookDelivery]:
    async with runtime.session_factory() as session:
        query = select(WebhookDelivery).order_by(WebhookDelivery.event_id, WebhookDelivery.endpoint_id)
        if endpoint_id is not None:
            query = query.where(WebhookDelivery.endpoint_id == endpoint_id)
        return list((await session.scalars(query)).all())


async def delivery_count(runtime: Runtime) -> int:
    async with runtime.session_factory() as session:
        return int(await session.scalar(select(func.count()).select_from(WebhookDelivery)) or 0)
