"""Every Prometheus metric the server and the edge export, in one place (the shared kernel: any layer may import it).

The registry is process-global: a process serves one app (``serve``, ``scheduler`` or ``edge``), and Prometheus
scrapes a process. Tests build many apps in one process, so they read how a metric *moved* (before and after),
never its absolute value. Label values are bounded: routes are templates,
never raw paths (``/v1/admin/licenses/{license_id}``); unmatched paths share one label.

Exposition is off the public listener by default: ``/metrics`` answers 404 unless ``LICENSE_SERVER_METRICS_TOKEN``
is set (then it takes ``Authorization: Bearer <token>``), and ``LICENSE_SERVER_METRICS_PORT`` serves the same
registry on a port of its own (``LICENSE_SERVER_METRICS_HOST``, loopback by default) for a scraper on the host.
"""

from __future__ import annotations

import hmac
import threading
import weakref
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
UNMATCHED_ROUTE = "<unmatched>"
# Request latencies: the poll path answers in about a millisecond; admin writes and signing take tens.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_JOB_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

WRITE_BATCH_SIZE = Histogram(
    "license_server_write_batch_size",
    "Requests per group-commit batch (SQLite's one-writer thread), by writer.",
    ["writer"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
    registry=REGISTRY,
)
BILLING_USAGE_WRITES = Counter(
    "license_server_billing_usage_writes",
    "Billing usage writes (consume, reserve, commit, events, ...) as they land, by storage and outcome.",
    ["storage", "outcome"],
    registry=REGISTRY,
)
SWEEP_DURATION = Histogram(
    "license_server_sweep_duration_seconds",
    "How long one lifecycle sweep took (runs that held the lease).",
    buckets=_JOB_BUCKETS,
    registry=REGISTRY,
)
SWEEP_TRANSITIONS = Counter(
    "license_server_sweep_transitions",
    "What the lifecycle sweep changed: licenses whose status moved, activations gone lost, events emitted.",
    ["kind"],
    registry=REGISTRY,
)
WEBHOOK_ATTEMPTS = Counter(
    "license_server_webhook_attempts",
    "Webhook delivery attempts by outcome: success (2xx), http_error (another status), transport_error (no answer).",
    ["outcome"],
    registry=REGISTRY,
)
WEBHOOK_DELIVERY_LAG = Histogram(
    "license_server_webhook_delivery_lag_seconds",
    "From an event's occurrence to its successful delivery.",
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600),
    registry=REGISTRY,
)
JOB_RUNS = Counter(
    "license_server_scheduler_job_runs",
    "Scheduled job runs by job and outcome (ok, failed).",
    ["job", "outcome"],
    registry=REGISTRY,
)
JOB_DURATION = Histogram(
    "license_server_scheduler_job_duration_seconds",
    "How long each scheduled job run took, whatever it did.",
    ["job"],
    buckets=_JOB_BUCKETS,
    registry=REGISTRY,
)
JOB_CONSECUTIVE_FAILURES = Gauge(
    "license_server_scheduler_job_consecutive_failures",
    "Failed runs in a row per job (0 after a good run); readiness turns unready past a threshold.",
    ["job"],
    registry=REGISTRY,
)


class _PoolCollector(Collector):
    """Connections of the database pools this process holds: read when scraped, so the request path pays nothing."""

    def __init__(self) -> None:
        self._pools: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()

    def watch(self, pool: Any) -> None:
        with self._lock:
            self._pools.add(pool)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "license_server_db_pool_connections",
            "Database pool connections by state (checked_out, idle, overflow), summed over this process's pools.",
            labels=["state"],
        )
        totals = {"checked_out": 0, "idle": 0, "overflow": 0}
        with self._lock:
            pools = list(self._pools)
        for pool in pools:
            for state, method in (("checked_out", "checkedout"), ("idle", "checkedin"), ("overflow", "overflow")):
                reader = getattr(pool, method, None)
                if callable(reader):  # NullPool and StaticPool (SQLite) keep no counts
                    totals[state] += max(int(reader()), 0)
        for state, value in totals.items():
            family.add_metric([state], value)
        yield family

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []


_POOLS = _PoolCollector()
REGISTRY.register(_POOLS)


class _LatencyTally:
    """One label set's latency histogram: a count per bucket (the last is +Inf) and the sum of the seconds."""

    __slots__ = ("counts", "seconds")

    def __init__(self) -> None:
        self.counts = [0] * (len(_LATENCY_BUCKETS) + 1)
        self.seconds = 0.0


class _RequestCollector(Collector):
    """Requests answered and their latencies, by app, method, route template (and status for the count).

    Kept as plain integers in dictionaries by the event loop that answers the requests, and turned into metric
    families only when scraped: the client library's children take a lock on every ``inc`` and ``observe``, which
    on the poll path (about 100 µs a request) cost several per cent of its requests/s; an addition here costs tens
    of nanoseconds. Only the event loop writes; a scrape from the metrics port's thread copies (atomic under the
    GIL) before reading, and derives each count from the bucket copy it read, so a histogram is consistent.
    """

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, str, int], int] = {}
        self._latencies: dict[tuple[str, str, str], _LatencyTally] = {}

    def observe(self, app: str, method: str, route: str, status: int, seconds: float) -> None:
        key = (app, method, route, status)
        self._counts[key] = self._counts.get(key, 0) + 1
        latency = self._latencies.get(key[:3])
        if latency is None:
            latency = self._latencies[key[:3]] = _LatencyTally()
        latency.counts[bisect_left(_LATENCY_BUCKETS, seconds)] += 1
        latency.seconds += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "license_server_http_requests",
            "HTTP requests answered, by app, method, route template and status code.",
            labels=["app", "method", "route", "status"],
        )
        for (app, method, route, status), count in self._counts.copy().items():
            requests.add_metric([app, method, route, str(status)], count)
        yield requests
        latency = HistogramMetricFamily(
            "license_server_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by app, method and route template.",
            labels=["app", "method", "route"],
        )
        bounds = [*(_bound(b) for b in _LATENCY_BUCKETS), "+Inf"]
        for labels, tally in self._latencies.copy().items():
            total, counts = tally.seconds, list(tally.counts)
            cumulative, buckets = 0, []
            for bound, count in zip(bounds, counts, strict=True):
                cumulative += count
                buckets.append((bound, float(cumulative)))
            latency.add_metric(list(labels), buckets, total)
        yield latency

    def describe(self) -> Iterable[Metric]:
        return []


def _bound(seconds: float) -> str:
    return repr(float(seconds))


class _CountsLookups(Protocol):
    """What a cache exposes to the metrics: its name and the hits and misses it has counted (plain integers)."""

    name: str
    hits: int
    misses: int


class _CacheCollector(Collector):
    """Cache hits and misses by cache name, summed over the live caches when scraped (the lookups just add 1)."""

    def __init__(self) -> None:
        self._caches: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()

    def watch(self, cache: _CountsLookups) -> None:
        with self._lock:
            self._caches.add(cache)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "license_server_cache_lookups",
            "In-process cache lookups (the poll path's activations and licenses, billing's reads) by cache and result.",
            labels=["cache", "result"],
        )
        with self._lock:
            caches = list(self._caches)
        totals: dict[tuple[str, str], int] = {}
        for cache in caches:
            for result, count in (("hit", cache.hits), ("miss", cache.misses)):
                totals[(cache.name, result)] = totals.get((cache.name, result), 0) + count
        for labels, count in totals.items():
            family.add_metric(list(labels), count)
        yield family

    def describe(self) -> Iterable[Metric]:
        return []


REQUESTS = _RequestCollector()
REGISTRY.register(REQUESTS)
_CACHES = _CacheCollector()
REGISTRY.register(_CACHES)


def watch_cache(cache: _CountsLookups) -> None:
    """Export this cache's hit and miss counts while it lives."""
    _CACHES.watch(cache)


def watch_pool(pool: Any) -> None:
    """Export this pool's connection counts (``engine.sync_engine.pool``) while it lives."""
    _POOLS.watch(pool)


def exposition() -> tuple[bytes, str]:
    """The registry in Prometheus' text format, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def bearer_matches(authorization: str | None, token: str) -> bool:
    """Constant-time check of ``Authorization: Bearer <token>``."""
    scheme, _, presented = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode())


_served_ports: set[tuple[str, int]] = set()


def serve_metrics_port(host: str, port: int) -> None:
    """Serve the registry on its own port (a daemon thread), once per address in this process."""
    if (host, port) in _served_ports:
        return
    start_http_server(port, addr=host, registry=REGISTRY)
    _served_ports.add((host, port))
