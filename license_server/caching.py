"""A short-lived in-process cache with bounded staleness and no stampedes (the poll path's and billing's reads)."""

from __future__ import annotations

import asyncio
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from license_server.metrics import watch_cache

K = TypeVar("K")
V = TypeVar("V")


@dataclass
class _Entry(Generic[V]):
    value: V
    refresh_at: float
    expires_at: float


class LoadingCache(Generic[K, V]):
    """The poll path's cache: bounded staleness without stampedes.

    An entry is served as is until ``refresh_at`` (about 80 % of its life), then still served while one background
    load replaces it, and never after ``expires_at`` (at most ``ttl`` after it was loaded). Concurrent misses for a
    key share one load. Lifetimes are jittered so entries loaded together do not all expire together.

    ``discard`` and ``clear`` (a write here, or one pushed from another replica: replicas/invalidation.py) also
    outdate the loads already running for the key: each load notes the invalidation generation it started at, and
    a load that an invalidation overtook answers its own waiters but is never cached, so a slow load that read the
    old row cannot put it back after the write's invalidation arrived. Later callers start a fresh load.
    """

    def __init__(
        self,
        ttl: float,
        max_entries: int = 100_000,
        monotonic: Callable[[], float] = time.monotonic,
        *,
        name: str = "other",
    ) -> None:
        """``name`` labels the cache's hits and misses in the metrics (``license_server_cache_lookups_total``)."""
        self._ttl = ttl
        self.name = name
        self.hits = 0
        self.misses = 0
        watch_cache(self)
        self._max = max_entries
        self._monotonic = monotonic
        self._entries: OrderedDict[K, _Entry[V]] = OrderedDict()
        self._loading: dict[K, asyncio.Task[V]] = {}
        # Invalidation generations: a counter, the generation each key was last invalidated at, and that of the last
        # clear. Only loads in flight need them, so the per-key record is dropped whenever none is running.
        self._generation = 0
        self._invalidated: dict[K, int] = {}
        self._cleared = 0
        self._running = 0  # loads not finished, including those an invalidation detached from ``_loading``

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        if self._ttl <= 0:
            return await load()
        now = self._monotonic()
        entry = self._entries.get(key)
        if entry is not None and now < entry.expires_at:
            self.hits += 1
            if now >= entry.refresh_at and key not in self._loading:
                self._start_load(key, load).add_done_callback(_consume_exception)
            return entry.value
        self.misses += 1
        task = self._loading.get(key) or self._start_load(key, load)
        return await asyncio.shield(task)

    def _start_load(self, key: K, load: Callable[[], Awaitable[V]]) -> asyncio.Task[V]:
        started = self._generation
        self._running += 1

        async def run() -> V:
            try:
                value = await load()
            except BaseException:
                if not self._finish(key, task, started):
                    self._entries.pop(key, None)  # e.g. a token deactivated elsewhere: stop serving the old answer
                raise
            if self._finish(key, task, started):
                return value  # read before an invalidation this process has since seen: answer, never cache
            lifetime = self._ttl * (1 - 0.2 * random.random())  # noqa: S311 - jitter, not security
            loaded = self._monotonic()
            self._entries[key] = _Entry(value, loaded + 0.8 * lifetime, loaded + lifetime)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
            return value

        task = asyncio.ensure_future(run())
        self._loading[key] = task
        return task

    def _finish(self, key: K, task: asyncio.Task[V], started: int) -> bool:
        """A load is over: whether an invalidation overtook it (then its value must not be cached)."""
        outdated = self._cleared > started or self._invalidated.get(key, -1) > started
        if self._loading.get(key) is task:
            del self._loading[key]
        self._running -= 1
        if not self._running:
            self._invalidated.clear()
        return outdated

    def discard(self, key: K) -> None:
        """Forget ``key``: its entry, and whatever a load already running for it will read."""
        self._generation += 1
        self._entries.pop(key, None)
        self._loading.pop(key, None)
        if self._running:
            self._invalidated[key] = self._generation

    def clear(self) -> None:
        self._generation += 1
        self._cleared = self._generation
        self._entries.clear()
        self._loading.clear()


def _consume_exception(task: asyncio.Task[object]) -> None:
    if not task.cancelled():
        task.exception()  # a failed background refresh is retried by the next request; nothing to report here
