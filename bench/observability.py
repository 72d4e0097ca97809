"""What metrics and structured logging cost the poll path: ``GET /v1/license`` (304, the common case) on the product
as served, against the same product without the per-request observability (request id, request metrics) and
without the logging setup, in the same run. Target: at most 3 % fewer requests/s.

The machine is shared, so the two servers are measured alternately, twice each, and the ratio is of the sums. A
third variant, with one access-log line per request (``LICENSE_SERVER_ACCESS_LOG``, off by default), is reported
for context.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.common import Report, Row, percent, rate
from bench.load import LoadResult, Request, run_load
from bench.poll import CONNECTIONS, LICENSES, SECONDS, WARMUP_SECONDS, _deployments
from bench.server import LicenseServerData, uvicorn_server

TARGET_COST = 0.03
ROUNDS = 4  # alternating pairs: runs on this machine differ by a few per cent, the cost is the size of that


def _measure(
    name: str, factory: str, data: LicenseServerData, env: dict[str, str], requests: list[Request]
) -> LoadResult:
    with uvicorn_server(name, factory, env, data.directory, "/health/live") as server:
        return run_load(
            port=server.port,
            server_pid=server.pid,
            requests=requests,
            connections=CONNECTIONS,
            seconds=SECONDS,
            warmup=WARMUP_SECONDS,
            tag=name,
        )


def run() -> Report:
    with tempfile.TemporaryDirectory(prefix="bench-observability-") as directory:
        data = LicenseServerData.create(Path(directory), LICENSES)
        with uvicorn_server(
            "setup", "bench.apps:unobserved_product_app", data.env, data.directory, "/health/live"
        ) as s:
            deployments = _deployments(s.base_url, data)
        conditional = [
            Request("GET", "/v1/license", {"Authorization": f"Bearer {token}", "If-None-Match": etag})
            for token, etag in deployments
        ]
        with_logs = {**data.env, "LICENSE_SERVER_LOG_LEVEL": "INFO"}
        plain: list[LoadResult] = []
        observed: list[LoadResult] = []
        for _ in range(ROUNDS):
            plain.append(_measure("unobserved", "bench.apps:unobserved_product_app", data, data.env, conditional))
            observed.append(_measure("observed", "bench.apps:observed_product_app", data, with_logs, conditional))
        access = _measure(
            "access-log",
            "bench.apps:observed_product_app",
            data,
            {**with_logs, "LICENSE_SERVER_ACCESS_LOG": "true"},
            conditional,
        )

    plain_rps = sum(r.rps for r in plain) / ROUNDS
    observed_rps = sum(r.rps for r in observed) / ROUNDS
    cost = 1 - observed_rps / plain_rps
    rows = [
        Row(
            f"poll 304 with metrics + JSON logging ({CONNECTIONS} conns, mean of {ROUNDS} alternating runs)",
            rate(observed_rps, " req/s"),
            "the same without request metrics, request ids or logging setup",
            rate(plain_rps, " req/s"),
            f"cost {cost:.1%} (target ≤ {percent(TARGET_COST)})",
            cost <= TARGET_COST,
        ),
        Row(
            "poll 304 with an access-log line per request too (off by default)",
            rate(access.rps, " req/s"),
            "without observability (as above)",
            rate(plain_rps, " req/s"),
            f"cost {percent(1 - access.rps / plain_rps)}",
            None,
        ),
    ]
    notes = [
        "observability: runs, in order — "
        + ", ".join(
            f"{label} {rate(result.rps, ' req/s')} (other processes {result.other_cpu:.0%} of a core)"
            for pair in zip(plain, observed, strict=True)
            for label, result in zip(("without", "with"), pair, strict=True)
        )
        + f"; access log {rate(access.rps, ' req/s')}.",
    ]
    return Report(rows, notes)
