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
from collections.abc import Iterable, Iterator
from typing import Any

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
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
UNMATCHED_ROUTE = "<unmatched>"
# Request latencies: the poll path answers in about a millisecond; admin writes and signing take tens.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_JOB_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

HTTP_REQUESTS = Counter(
    "license_server_http_requests",
    "HTTP requests answered, by app, method, route template and status code.",
    ["app", "method", "route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "license_server_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response, by app, method and route template.",
    ["app", "method", "route"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
CACHE_LOOKUPS = Counter(
    "license_server_cache_lookups",
    "In-process cache lookups (the poll path's activations and licenses, billing's reads), by cache and result.",
    ["cache", "result"],
    registry=REGISTRY,
)
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
