"""What a process holds for billing: the writer of usage, short-lived caches, and the failed-auth limiter it shares
with every other secret. Built by the runtime; nothing here is authoritative (every replica can rebuild it)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from license_server.auth.hashing import SecretHasher
from license_server.billing.accounts.snapshots import AccountSnapshot, PlatformSnapshot
from license_server.billing.usage.writer import UsageWriter
from license_server.caching import LoadingCache
from license_server.clock import Clock
from license_server.replicas.invalidation import InvalidationBus, Topic


class FailedAuthLimiter(Protocol):
    def retry_after(self, key: str) -> int | None: ...

    async def record(self, key: str, secret: str | None) -> None: ...


@dataclass(frozen=True)
class CachedReport:
    report: dict[str, Any]
    body: bytes  # ``{"data": report}`` serialised once, served as is


@dataclass
class BillingState:
    session_factory: async_sessionmaker[AsyncSession]
    clock: Clock
    hasher: Callable[[], SecretHasher]
    failed_auth_limiter: FailedAuthLimiter
    write_gate: contextlib.AbstractAsyncContextManager[object]
    writer: UsageWriter
    cache_seconds: float
    platforms: LoadingCache[str, PlatformSnapshot] = field(init=False)  # by secret digest
    accounts: LoadingCache[tuple[uuid.UUID, str], AccountSnapshot] = field(init=False)
    # Limits reports by account: served for at most cache_seconds, dropped by every usage write of this process (so
    # a platform reads its own writes here); other replicas' writes show within the window.
    reports: LoadingCache[uuid.UUID, CachedReport] = field(init=False)
    # Pushes an invalidation to every replica (the runtime's bus); without one, only this process forgets.
    announce: Callable[[Topic, str | None], Awaitable[None]] | None = None

    def __post_init__(self) -> None:
        self.platforms = LoadingCache(self.cache_seconds, name="billing.platforms")
        self.accounts = LoadingCache(self.cache_seconds, name="billing.accounts")
        self.reports = LoadingCache(self.cache_seconds, name="billing.reports")

    def forget_platforms(self) -> None:
        """After a staff change to a platform or a secret: this process stops serving the old answer at once."""
        self.platforms.clear()
        self.accounts.clear()
        self.reports.clear()

    def forget_account(self, platform_id: uuid.UUID, external_id: str) -> None:
        self.accounts.discard((platform_id, external_id))
        self.reports.clear()  # keyed by account id, which the caller may not know

    async def platforms_changed(self) -> None:
        """After a committed staff change to platforms, plans or secrets: every replica stops serving the old one."""
        if self.announce is None:
            self.forget_platforms()
        else:
            await self.announce(Topic.BILLING_PLATFORMS, None)

    async def account_changed(self, platform_id: uuid.UUID, external_id: str) -> None:
        """After a committed staff change to one account: every replica drops its snapshot."""
        if self.announce is None:
            self.forget_account(platform_id, external_id)
        else:
            await self.announce(Topic.BILLING_ACCOUNT, f"{platform_id}:{external_id}")

    def subscribe(self, bus: InvalidationBus) -> None:
        """Staff changes on any replica drop the snapshots here too (announced by billing's controllers)."""
        bus.subscribe(Topic.BILLING_PLATFORMS, lambda _key: self.forget_platforms())
        bus.subscribe(Topic.BILLING_ACCOUNT, self._forget_account_named)
        bus.on_reset(self.forget_platforms)

    def _forget_account_named(self, key: str | None) -> None:
        platform_id, _, external_id = (key or "").partition(":")
        try:
            self.forget_account(uuid.UUID(platform_id), external_id)
        except ValueError:
            self.forget_platforms()
