"""Per-process state of the poll path: short-lived caches, the check-in buffer and rate-limit windows.

Nothing here is authoritative: every replica can rebuild it from the database, and losing it (a restart) costs at
most the check-ins of the last flush interval.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from license_server.caching import LoadingCache as LoadingCache  # re-exported: the poll path's callers import it here
from license_server.licenses.service import LicenseView
from license_server.licenses.usage import UsageSummary
from license_server.lifecycle.status import StatusResult
from license_server.replicas.invalidation import Topic
from license_server.replicas.limits import FailureCounter, InProcessRequestLimit, RequestLimit

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class CheckIn:
    license_id: uuid.UUID
    at: datetime
    heartbeat_seconds: int
    # False for a license-level check-in (an inner-API call): keyed by its credential, it has no activation row.
    activation: bool = True


class CheckInBuffer:
    """Check-ins from polls (and inner-API calls), coalesced per activation (or credential) until the next flush."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[uuid.UUID, CheckIn] = {}

    def record(self, activation_id: uuid.UUID, check_in: CheckIn) -> None:
        with self._lock:
            self._pending[activation_id] = check_in

    def drain(self) -> dict[uuid.UUID, CheckIn]:
        with self._lock:
            pending, self._pending = self._pending, {}
            return pending

    def restore(self, pending: dict[uuid.UUID, CheckIn]) -> None:
        """Put back check-ins a failed flush could not write (newer ones win)."""
        with self._lock:
            for activation_id, check_in in pending.items():
                current = self._pending.get(activation_id)
                if current is None or current.at < check_in.at:
                    self._pending[activation_id] = check_in

    def __len__(self) -> int:
        return len(self._pending)


class RateLimiter:
    """At most ``limit`` requests per key per ``window`` seconds (a sliding log, bounded in memory).

    Each key's log is a deque of at most ``limit`` times, oldest first: a hit drops the expired times from the left,
    so it costs O(1) amortised however high the limit is set.
    """

    def __init__(
        self, limit: int, window: float = 60.0, max_keys: int = 100_000, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self._window = window
        self._max_keys = max_keys
        self._monotonic = monotonic
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, key: str) -> int | None:
        """Without counting anything: None if ``key`` may go on, else the seconds until it may."""
        now = self._monotonic()
        with self._lock:
            hits = [t for t in self._hits.get(key, ()) if t > now - self._window]
            if len(hits) >= self.limit:
                return max(1, math.ceil(hits[0] + self._window - now))
            return None

    def hit(self, key: str) -> int | None:
        """Count a request; None if allowed, else the seconds until it would be."""
        now = self._monotonic()
        with self._lock:
            hits = self._hits.get(key)
            if hits is None:
                hits = self._hits[key] = deque()
            horizon = now - self._window
            while hits and hits[0] <= horizon:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(1, math.ceil(hits[0] + self._window - now))
            hits.append(now)
            self._hits.move_to_end(key)
            while len(self._hits) > self._max_keys:
                self._hits.popitem(last=False)
            return None


class DistinctFailureLimiter:
    """At most ``limit`` *different* failures (e.g. wrong secrets, by fingerprint) per key per ``window`` seconds.

    A failure repeated within the window only refreshes its time; each key keeps at most ``limit`` fingerprints,
    oldest first, so memory is bounded by ``limit * max_keys``.
    """

    def __init__(
        self, limit: int, window: float = 60.0, max_keys: int = 100_000, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self._window = window
        self._max_keys = max_keys
        self._monotonic = monotonic
        self._failures: OrderedDict[str, OrderedDict[bytes, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _current(self, key: str, now: float) -> OrderedDict[bytes, float] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        horizon = now - self._window
        while failures and next(iter(failures.values())) <= horizon:
            failures.popitem(last=False)
        return failures

    def retry_after(self, key: str) -> int | None:
        """None if ``key`` may go on, else the seconds until it may."""
        now = self._monotonic()
        with self._lock:
            failures = self._current(key, now)
            if failures is None or len(failures) < self.limit:
                return None
            return max(1, math.ceil(next(iter(failures.values())) + self._window - now))

    def record(self, key: str, fingerprint: bytes) -> None:
        now = self._monotonic()
        with self._lock:
            failures = self._current(key, now)
            if failures is None:
                failures = self._failures[key] = OrderedDict()
            if fingerprint in failures or len(failures) < self.limit:
                failures[fingerprint] = now
                failures.move_to_end(fingerprint)
            self._failures.move_to_end(key)
            while len(self._failures) > self._max_keys:
                self._failures.popitem(last=False)


@dataclass(frozen=True)
class ActivationSnapshot:
    id: uuid.UUID
    license_id: uuid.UUID
    fingerprint: str


@dataclass(frozen=True)
class LicenseSnapshot:
    """A license as loaded from the database, treated as immutable until it expires from the cache."""

    view: LicenseView
    usage: UsageSummary


@dataclass(frozen=True)
class CachedDocument:
    content_hash: str
    token: str
    etag: str
    refresh_after: float  # epoch seconds: past this the document is re-signed even if its content is unchanged
    # What the content was built from: while the same cached snapshot gives the same status, it is not rebuilt.
    snapshot: LicenseSnapshot | None = None
    status: object = None
    kid: str = ""  # the issuing key that signed it: a document of a retired key is never served again


# A PollState made without a runtime (tests) fingerprints wrong secrets under a key of its own; the runtime's
# limiter uses the keyring's (SecretHasher.fingerprint), the same in every replica.
_FINGERPRINT_KEY = secrets.token_bytes(32)


def _process_fingerprint(secret: str | None) -> bytes:
    return hashlib.blake2b((secret or "").encode(), key=_FINGERPRINT_KEY, digest_size=16).digest()


@dataclass
class PollState:
    """Everything the deployment API keeps in memory, held by the Runtime.

    The limiters are in-process here; on PostgreSQL the runtime replaces them with ones every replica shares
    (replicas/limits.py)."""

    cache_seconds: float
    rate_limit_per_address: int = 60
    rate_limit_per_license_key: int = 20
    rate_limit_failed_auth_per_address: int = 30
    activations: LoadingCache[str, ActivationSnapshot] = field(init=False)
    licenses: LoadingCache[uuid.UUID, LicenseSnapshot] = field(init=False)
    documents: dict[uuid.UUID, CachedDocument] = field(default_factory=dict)
    # The status last computed for a license's polls: (from which snapshot, at which epoch second, the status).
    statuses: dict[uuid.UUID, tuple[LicenseSnapshot, float, StatusResult]] = field(default_factory=dict)
    address_limiter: RequestLimit = field(init=False)
    license_key_limiter: RequestLimit = field(init=False)
    # Different wrong secrets per client address and credential kind (auth/throttle.py): guessing is slowed to a crawl.
    failed_auth_limiter: FailureCounter = field(init=False)
    check_ins: CheckInBuffer = field(default_factory=CheckInBuffer)

    def __post_init__(self) -> None:
        self.activations = LoadingCache(self.cache_seconds, name="poll.activations")
        self.licenses = LoadingCache(self.cache_seconds, name="poll.licenses")
        self.address_limiter = InProcessRequestLimit(RateLimiter(self.rate_limit_per_address))
        self.license_key_limiter = InProcessRequestLimit(RateLimiter(self.rate_limit_per_license_key))
        self.failed_auth_limiter = FailureCounter(
            DistinctFailureLimiter(self.rate_limit_failed_auth_per_address),
            limit=self.rate_limit_failed_auth_per_address,
            fingerprint=_process_fingerprint,
        )

    def forget_documents_of(self, kids: frozenset[str]) -> None:
        """Drop the cached documents signed by retired keys (they are signed again, by the current key)."""
        for license_id in [lid for lid, cached in self.documents.items() if cached.kid in kids]:
            self.documents.pop(license_id, None)

    def forget_license(self, license_id: uuid.UUID) -> None:
        self.licenses.discard(license_id)
        self.documents.pop(license_id, None)
        self.statuses.pop(license_id, None)

    def forget_licenses(self) -> None:
        """Every license (a change too wide to name each, or notifications that may have been missed)."""
        self.licenses.clear()
        self.documents.clear()
        self.statuses.clear()

    def forget_everything(self) -> None:
        self.forget_licenses()
        self.activations.clear()

    def invalidated(self, topic: Topic, key: str | None) -> None:
        """A write somewhere (any replica, the CLI) changed what this topic's key names: drop what is cached of it."""
        if topic is Topic.LICENSE:
            if key is None:
                self.forget_licenses()
            else:
                self.forget_license(uuid.UUID(key))
        elif topic is Topic.ACTIVATIONS:
            self.activations.clear()
