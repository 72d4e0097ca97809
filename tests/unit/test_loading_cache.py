"""The poll path's cache: one load per key under concurrency, refresh ahead of expiry, never stale beyond the TTL."""

from __future__ import annotations

import asyncio

import pytest

from license_server.deployments.runtime_state import LoadingCache


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingLoader:
    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self) -> int:
        self.calls += 1
        await self.release.wait()
        return self.calls


async def test_concurrent_misses_share_one_load() -> None:
    cache: LoadingCache[str, int] = LoadingCache(5.0, monotonic=FakeTime())
    loader = CountingLoader()
    loader.release.clear()
    waiting = [asyncio.ensure_future(cache.get("k", loader)) for _ in range(32)]
    await asyncio.sleep(0)
    loader.release.set()
    assert await asyncio.gather(*waiting) == [1] * 32
    assert loader.calls == 1


async def test_entries_are_served_until_the_refresh_point_without_loading() -> None:
    clock = FakeTime()
    cache: LoadingCache[str, int] = LoadingCache(5.0, monotonic=clock)
    loader = CountingLoader()
    await cache.get("k", loader)
    clock.now += 3.0  # before 80 % of the shortest jittered lifetime (4 s)
    assert await cache.get("k", loader) == 1
    assert loader.calls == 1


async def test_near_expiry_the_old_value_is_served_while_one_background_load_refreshes_it() -> None:
    clock = FakeTime()
    cache: LoadingCache[str, int] = LoadingCache(5.0, monotonic=clock)
    loader = CountingLoader()
    await cache.get("k", loader)
    loader.release.clear()
    clock.now = 1000.0 + 4.0  # past every refresh point, before every expiry (>= 4 s)
    assert [await cache.get("k", loader) for _ in range(10)] == [1] * 10  # no request waits
    await asyncio.sleep(0)
    assert loader.calls == 2  # exactly one refresh started
    loader.release.set()
    await asyncio.sleep(0.01)
    assert await cache.get("k", loader) == 2


async def test_an_expired_entry_is_never_served() -> None:
    clock = FakeTime()
    cache: LoadingCache[str, int] = LoadingCache(5.0, monotonic=clock)
    loader = CountingLoader()
    await cache.get("k", loader)
    clock.now += 5.0
    assert await cache.get("k", loader) == 2


async def test_a_failed_load_is_not_cached_and_drops_the_old_entry() -> None:
    clock = FakeTime()
    cache: LoadingCache[str, int] = LoadingCache(5.0, monotonic=clock)
    await cache.get("k", CountingLoader())

    async def failing() -> int:
        raise LookupError("gone")

    clock.now += 4.0  # past every refresh point, before every expiry: the background refresh fails
    assert await cache.get("k", failing) == 1
    await asyncio.sleep(0.01)
    with pytest.raises(LookupError):
        await cache.get("k", failing)  # the old answer is no longer served


async def test_a_zero_ttl_loads_every_time() -> None:
    cache: LoadingCache[str, int] = LoadingCache(0.0)
    loader = CountingLoader()
    assert [await cache.get("k", loader) for _ in range(3)] == [1, 2, 3]


class GatedLoader:
    """Each call returns the value the database held when it *read*: ``value`` at call time, after a gate."""

    def __init__(self, value: str) -> None:
        self.value = value
        self.gate = asyncio.Event()
        self.reading = asyncio.Event()
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        read = self.value
        self.reading.set()
        await self.gate.wait()
        return read


async def test_a_slow_load_overtaken_by_an_invalidation_is_never_cached() -> None:
    """The write commits and its invalidation arrives while a load that read the old row is still running: that
    load answers its own caller, but the next caller loads again and sees the write."""
    cache: LoadingCache[str, str] = LoadingCache(60.0, monotonic=FakeTime())
    loader = GatedLoader("old")
    slow = asyncio.ensure_future(cache.get("k", loader))
    await loader.reading.wait()
    loader.value = "new"  # the write commits ...
    cache.discard("k")  # ... and its invalidation is delivered
    loader.gate.set()
    assert await slow == "old"
    assert await cache.get("k", loader) == "new"
    assert loader.calls == 2
    assert await cache.get("k", loader) == "new"  # and that one is cached
    assert loader.calls == 2


async def test_a_clear_outdates_every_running_load() -> None:
    cache: LoadingCache[str, str] = LoadingCache(60.0, monotonic=FakeTime())
    loaders = {key: GatedLoader("old") for key in ("a", "b")}
    slow = [asyncio.ensure_future(cache.get(key, loader)) for key, loader in loaders.items()]
    for loader in loaders.values():
        await loader.reading.wait()
    for loader in loaders.values():
        loader.value = "new"
    cache.clear()
    for loader in loaders.values():
        loader.gate.set()
    assert await asyncio.gather(*slow) == ["old", "old"]
    assert [await cache.get(key, loader) for key, loader in loaders.items()] == ["new", "new"]


async def test_an_invalidation_of_another_key_leaves_a_running_load_cacheable() -> None:
    cache: LoadingCache[str, str] = LoadingCache(60.0, monotonic=FakeTime())
    loader = GatedLoader("v")
    slow = asyncio.ensure_future(cache.get("k", loader))
    await asyncio.sleep(0)
    cache.discard("other")
    loader.gate.set()
    assert await slow == "v"
    assert await cache.get("k", loader) == "v"
    assert loader.calls == 1
