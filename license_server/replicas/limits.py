"""Rate limits and failed-auth counts that hold across replicas: N replicas behind one address enforce ONE limit.

On SQLite (one process) both are the in-process limiters of deployments/runtime_state.py, unchanged. On
PostgreSQL:

- ``SharedRequestLimit`` counts each allowed request with one atomic upsert into ``shared_rate_windows`` (a sliding
  window estimated from the current and the previous fixed window, on the database's clock, so replicas' clocks do
  not matter). The check and the count are one statement, so concurrent replicas can never both take the last
  slot. Its fast path: a refusal is remembered here until the earliest instant the key could be allowed again, and
  answered without asking (correct, since counts only grow until then). Only the activation and validation routes
  are rate-limited, and both write to the database anyway.
- ``FailureCounter`` checks *in memory* on every authenticated request (the poll path must stay cache-first): this
  process's own failures, and the blocks other replicas pushed. Each failure is also written to
  ``shared_auth_failures``; the replica whose write takes a key over the limit pushes a block to every replica on
  the invalidation bus. A guesser spraying replicas gets at most the NOTIFY delivery time (milliseconds) of extra
  tries, once per window.

Metrics hook (ops15a, license_server/metrics.py): refusals by limiter, shared-limit round trips.
"""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from license_server.replicas.invalidation import InvalidationBus, Topic


class RequestLimit(Protocol):
    limit: int

    async def hit(self, key: str) -> int | None:
        """Count a request; None if allowed, else the seconds until it would be."""


class LocalRateLimiter(Protocol):
    limit: int

    def hit(self, key: str) -> int | None: ...


class LocalFailureLimiter(Protocol):
    def retry_after(self, key: str) -> int | None: ...

    def record(self, key: str, fingerprint: bytes) -> None: ...


class InProcessRequestLimit:
    """SQLite, one process: the in-process sliding log as it is."""

    def __init__(self, local: LocalRateLimiter) -> None:
        self._local = local
        self.limit = local.limit

    async def hit(self, key: str) -> int | None:
        return self._local.hit(key)


class _Blocks:
    """Keys refused until a monotonic instant, bounded in memory (oldest forgotten first)."""

    def __init__(self, max_keys: int, monotonic: Callable[[], float]) -> None:
        self._until: OrderedDict[str, float] = OrderedDict()
        self._max = max_keys
        self._monotonic = monotonic

    def block(self, key: str, seconds: float) -> None:
        until = self._monotonic() + seconds
        if self._until.get(key, 0.0) < until:
            self._until[key] = until
            self._until.move_to_end(key)
            while len(self._until) > self._max:
                self._until.popitem(last=False)

    def retry_after(self, key: str) -> int | None:
        until = self._until.get(key)
        if until is None:
            return None
        left = until - self._monotonic()
        if left <= 0:
            del self._until[key]
            return None
        return max(1, math.ceil(left))


# One statement: read the previous window, and count this request in the current one only if the sliding estimate
# stays within the limit (the ON CONFLICT branch re-checks against the row as locked, so two replicas racing for
# the last slot cannot both get it). The final SELECT answers whether the request was counted, and the figures the
# refusal's Retry-After is computed from.
_HIT = text(
    """
WITH slot AS (
    SELECT floor(extract(epoch FROM clock_timestamp()) / :window)::bigint AS bucket,
           extract(epoch FROM clock_timestamp()) / :window
               - floor(extract(epoch FROM clock_timestamp()) / :window) AS frac
), previous AS (
    SELECT coalesce((SELECT w.hits FROM shared_rate_windows w, slot
                     WHERE w.key = :key AND w.bucket = slot.bucket - 1), 0) AS hits
), counted AS (
    INSERT INTO shared_rate_windows AS w (key, bucket, hits)
    SELECT :key, slot.bucket, 1 FROM slot, previous
    WHERE floor(previous.hits * (1 - slot.frac)) + 1 <= :limit
    ON CONFLICT (key, bucket) DO UPDATE SET hits = w.hits + 1
    WHERE floor((SELECT hits FROM previous) * (1 - (SELECT frac FROM slot))) + w.hits + 1 <= :limit
    RETURNING w.hits
)
SELECT (SELECT count(*) FROM counted) AS counted,
       previous.hits AS previous,
       coalesce((SELECT w.hits FROM shared_rate_windows w WHERE w.key = :key AND w.bucket = slot.bucket), 0)
           AS current,
       slot.frac AS frac,
       slot.bucket AS bucket
FROM slot, previous
"""
)
_FORGET_WINDOWS = text("DELETE FROM shared_rate_windows WHERE bucket < :bucket")


def seconds_until_allowed(*, limit: int, previous: int, current: int, frac: float, window: float) -> float:
    """How long a refused key must wait, given the counts at the refusal: until the previous window's weight has
    decayed enough (or, with the current window itself full, until the next window has decayed this one's)."""
    if current < limit:
        # allowed again once floor(previous * (1 - f)) + current + 1 <= limit
        needed = 1 - (limit - current) / previous if previous else 0.0
        return max(0.0, needed - frac) * window
    needed = 1 - limit / current
    return ((1 - frac) + max(0.0, needed)) * window


class SharedRequestLimit:
    """At most ``limit`` requests per key per sliding ``window`` seconds, counted by every replica together."""

    def __init__(
        self,
        engine: AsyncEngine,
        limit: int,
        *,
        prefix: str,
        window: float = 60.0,
        max_keys: int = 100_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self._engine = engine
        self._prefix = prefix
        self._window = window
        self._monotonic = monotonic
        self._blocks = _Blocks(max_keys, monotonic)
        self._next_cleanup = 0.0

    async def hit(self, key: str) -> int | None:
        known = self._blocks.retry_after(key)
        if known is not None:
            return known
        params = {"key": f"{self._prefix}:{key}", "window": self._window, "limit": self.limit}
        async with self._engine.connect() as connection:
            row = (await connection.execute(_HIT, params)).one()
            if self._monotonic() >= self._next_cleanup:
                # Windows older than the previous one count for nothing; any replica may drop them.
                await connection.execute(_FORGET_WINDOWS, {"bucket": int(row.bucket) - 1})
                self._next_cleanup = self._monotonic() + self._window
            await connection.commit()
        if row.counted:
            return None
        previous, frac = int(row.previous), float(row.frac)
        # The count read may predate a concurrent replica's; the refusal itself proves at least this many.
        current = max(int(row.current), self.limit - math.floor(previous * (1 - frac)))
        wait = seconds_until_allowed(
            limit=self.limit, previous=previous, current=current, frac=frac, window=self._window
        )
        self._blocks.block(key, wait)
        return max(1, math.ceil(wait))


# A failure: remember its fingerprint's latest time; then whether the key is over the limit, and until when (the
# limit-th most recent failure leaving the window frees the key).
_RECORD_FAILURE = text(
    """
INSERT INTO shared_auth_failures AS f (key, fingerprint, failed_at) VALUES (:key, :fingerprint, clock_timestamp())
ON CONFLICT (key, fingerprint) DO UPDATE SET failed_at = excluded.failed_at
"""
)
_BLOCKED_FOR = text(
    """
SELECT extract(epoch FROM f.failed_at + make_interval(secs => :window) - clock_timestamp()) AS seconds
FROM shared_auth_failures f
WHERE f.key = :key AND f.failed_at > clock_timestamp() - make_interval(secs => :window)
ORDER BY f.failed_at DESC
OFFSET :limit - 1 LIMIT 1
"""
)
_FORGET_FAILURES = text(
    "DELETE FROM shared_auth_failures WHERE failed_at < clock_timestamp() - make_interval(secs => :window)"
)


class FailureCounter:
    """Different failed secrets per limiter key (auth/throttle.py), checked in memory, counted across replicas on
    PostgreSQL. ``fingerprint`` must give every replica the same bytes for one wrong secret (a key derived from the
    shared secret-hashing key), so a client retrying one wrong secret counts once however many replicas it hits."""

    def __init__(
        self,
        local: LocalFailureLimiter,
        *,
        limit: int,
        fingerprint: Callable[[str | None], bytes],
        engine: AsyncEngine | None = None,
        bus: InvalidationBus | None = None,
        window: float = 60.0,
        max_keys: int = 100_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self._local = local
        self._fingerprint = fingerprint
        self._engine = engine if engine is not None and engine.dialect.name == "postgresql" else None
        self._bus = bus
        self._window = window
        self._monotonic = monotonic
        self._blocks = _Blocks(max_keys, monotonic)
        self._next_cleanup = 0.0
        if bus is not None:
            bus.subscribe(Topic.AUTH_BLOCK, self._blocked_elsewhere)

    def retry_after(self, key: str) -> int | None:
        """None if ``key`` may go on, else the seconds until it may. Never asks the database."""
        here, elsewhere = self._local.retry_after(key), self._blocks.retry_after(key)
        if here is None or elsewhere is None:
            return here if elsewhere is None else elsewhere
        return max(here, elsewhere)

    async def record(self, key: str, secret: str | None) -> None:
        fingerprint = self._fingerprint(secret)
        self._local.record(key, fingerprint)
        if self._engine is None:
            return
        params = {"key": key, "fingerprint": fingerprint, "window": self._window, "limit": self.limit}
        async with self._engine.connect() as connection:
            await connection.execute(_RECORD_FAILURE, params)
            seconds = (await connection.execute(_BLOCKED_FOR, params)).scalar()
            if self._monotonic() >= self._next_cleanup:
                await connection.execute(_FORGET_FAILURES, {"window": self._window})
                self._next_cleanup = self._monotonic() + self._window
            await connection.commit()
        if seconds is not None and float(seconds) > 0:
            retry = float(seconds)
            self._blocks.block(key, retry)
            if self._bus is not None:
                block = json.dumps({"key": key, "retry": retry}, separators=(",", ":"))
                await self._bus.announce(self._engine, Topic.AUTH_BLOCK, block)

    def _blocked_elsewhere(self, message: str | None) -> None:
        if message is None:
            return
        try:
            block = json.loads(message)
            key, retry = str(block["key"]), float(block["retry"])
        except (ValueError, KeyError, TypeError):
            return
        if 0 < retry <= self._window:
            self._blocks.block(key, retry)
