"""Cache invalidation pushed to every replica, so a write's effect is seen everywhere at once, not after a TTL.

A writer calls ``publish(session, topic, key)`` inside its transaction. On PostgreSQL that queues a
``NOTIFY license_server_invalidate`` in the same transaction, which the database delivers to every listening
process exactly when the write commits (never before: a replica that reloads on the message reads the write); a
process that is not serving at all (the CLI) notifies the serving replicas the same way. In the writing process
the topic's handlers also run right after the commit (SQLAlchemy's ``after_commit``), so it reads its own write
without waiting for the round trip, and on SQLite, one process, that is the whole mechanism.

Each serving process listens on a dedicated asyncpg connection outside the pool (``InvalidationListener``), with
reconnects. Notifications sent while a process was not listening are lost, so every (re)connect runs the reset
handlers: every cache is dropped. The caches themselves (caching.LoadingCache) keep invalidation generations, so a
load that read the old row before the message arrived is never cached after it.

The bound: a write is seen by every replica within its NOTIFY delivery (milliseconds) while listeners are
connected, and in any case within the caches' TTL (``poll_cache_seconds``), which still applies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Any

from sqlalchemy import event, func, make_url, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

logger = logging.getLogger(__name__)

CHANNEL = "license_server_invalidate"
_BUS = "license_server.invalidation_bus"  # session.info: the process's bus (set on the runtime's session factory)
_PENDING = "license_server.pending_invalidations"  # session.info: what this transaction invalidates
# NOTIFY payloads are limited to 8000 bytes; a key is an id or two, far below.
_MAX_KEY = 1000
_MANY_KEYS = 500  # a plan change moving thousands of licenses invalidates the topic rather than each one
_NOTIFY_EACH = text("SELECT pg_notify(:channel, payload) FROM unnest(CAST(:payloads AS text[])) AS payload")


class Topic(StrEnum):
    LICENSE = "license"  # key: a license id; its snapshot, document and status on the poll path
    ACTIVATIONS = "activations"  # every cached deployment token (a deactivation, a reissued token)
    BILLING_PLATFORMS = "billing-platforms"  # every platform, account and limits report cached by billing
    BILLING_ACCOUNT = "billing-account"  # key: "<platform id>:<external id>"
    AUTH_BLOCK = "auth-block"  # key: JSON {"key": limiter key, "retry": seconds}: an address over the limit


Handler = Callable[[str | None], None]


class InvalidationBus:
    """A process's handlers by topic. ``deliver`` runs them; the listener and the commit hook call it."""

    def __init__(self) -> None:
        self.origin = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"  # its own notifications are already applied
        self._handlers: dict[Topic, list[Handler]] = defaultdict(list)
        self._resets: list[Callable[[], None]] = []

    def subscribe(self, topic: Topic, handler: Handler) -> None:
        self._handlers[topic].append(handler)

    def on_reset(self, handler: Callable[[], None]) -> None:
        """``handler`` runs whenever notifications may have been missed: it must drop everything it caches."""
        self._resets.append(handler)

    def deliver(self, topic: Topic, key: str | None) -> None:
        for handler in self._handlers.get(topic, ()):
            try:
                handler(key)
            except Exception:  # one broken handler must not keep the others' caches stale
                logger.exception("invalidation handler for %s failed", topic)

    def reset(self) -> None:
        for handler in self._resets:
            try:
                handler()
            except Exception:
                logger.exception("cache reset handler failed")

    def session_info(self) -> dict[str, Any]:
        """What the runtime's session factory puts in every session's ``info``, so ``publish`` finds this bus."""
        return {_BUS: self}

    async def announce(self, engine: AsyncEngine, topic: Topic, key: str | None = None) -> None:
        """After a commit that had no ``publish`` in it: deliver here now, and to the other replicas."""
        self.deliver(topic, key)
        if engine.dialect.name == "postgresql":
            async with engine.connect() as connection:
                await connection.execute(select(func.pg_notify(CHANNEL, _payload(topic, key, self.origin))))
                await connection.commit()


def _payload(topic: Topic, key: str | None, origin: str | None) -> str:
    if key is not None and len(key) > _MAX_KEY:
        raise ValueError("an invalidation key is an id, not a document")
    return json.dumps({"t": topic.value, "k": key, "o": origin}, separators=(",", ":"))


async def publish(session: AsyncSession, topic: Topic, keys: Iterable[str | None] = (None,)) -> None:
    """Invalidate ``keys`` of ``topic`` (None: all of it) everywhere when ``session``'s transaction commits, and
    nowhere if it rolls back. One statement however many keys; past ``_MANY_KEYS`` the whole topic instead."""
    wanted = list(dict.fromkeys(keys))
    if len(wanted) > _MANY_KEYS:
        wanted = [None]
    pending: dict[tuple[Topic, str | None], None] = session.info.setdefault(_PENDING, {})
    fresh = [key for key in wanted if (topic, key) not in pending]
    if not fresh:
        return
    pending.update(dict.fromkeys((topic, key) for key in fresh))
    if session.get_bind().dialect.name == "postgresql":
        bus = session.info.get(_BUS)
        origin = bus.origin if isinstance(bus, InvalidationBus) else None
        payloads = [_payload(topic, key, origin) for key in fresh]
        await session.execute(_NOTIFY_EACH, {"channel": CHANNEL, "payloads": payloads})


@event.listens_for(Session, "after_commit")
def _deliver_after_commit(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    bus = session.info.get(_BUS)
    if pending and isinstance(bus, InvalidationBus):
        for topic, key in list(pending):
            bus.deliver(topic, key)


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)


class InvalidationListener:
    """LISTEN on a dedicated asyncpg connection, reconnecting with backoff; started and stopped with the app."""

    def __init__(self, database_url: str, bus: InvalidationBus, *, health_seconds: float = 5.0) -> None:
        # SQLAlchemy's URL names its driver ("postgresql+asyncpg://"); asyncpg wants the plain form.
        self._dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._bus = bus
        self._health_seconds = health_seconds
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()  # set while listening: tests wait on it, readiness may report it
        self.reconnects = 0  # metrics hook (ops15a, license_server/metrics.py): listener reconnects

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="invalidation-listener")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _on_notification(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            message = json.loads(payload)
            topic = Topic(message["t"])
        except (ValueError, KeyError, TypeError):
            logger.warning("ignoring a malformed invalidation message")
            return
        if message.get("o") == self._bus.origin:
            return  # delivered by the commit hook already
        key = message.get("k")
        self._bus.deliver(topic, key if isinstance(key, str) else None)

    async def _run(self) -> None:
        import asyncpg  # PostgreSQL only: a SQLite install never loads it

        delay = 0.1
        while True:
            try:
                connection = await asyncpg.connect(self._dsn, timeout=5)
            except (TimeoutError, OSError, asyncpg.PostgresError) as error:
                logger.warning("invalidation listener cannot connect (%s); retrying", type(error).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            try:
                await self._listen(connection)
                delay = 0.1
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                logger.warning("invalidation listener lost its connection (%s)", type(error).__name__)
            finally:
                self.connected.clear()
                connection.terminate()
            self.reconnects += 1
            await asyncio.sleep(delay)

    async def _listen(self, connection: Any) -> None:
        """Listen until the connection is lost (returns) or fails a health check (raises)."""
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _connection: lost.set())
        await connection.add_listener(CHANNEL, self._on_notification)
        # Whatever was published while this process was not listening is unknown: drop every cache.
        self._bus.reset()
        self.connected.set()
        if self.reconnects:
            logger.info("invalidation listener reconnected; caches dropped")
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), self._health_seconds)
            if not lost.is_set():
                await connection.execute("SELECT 1")  # finds a half-open connection a crash left behind
