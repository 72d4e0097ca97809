"""Activations per second on SQLite through the HTTP API, with the in-process service rate for context.

16 keep-alive connections POST /v1/activations with distinct fingerprints against one unlimited license
(max_activations 0) for a few seconds; every answer must be 201. The in-process figure calls
``license_server.deployments.service.activate`` in a loop, one at a time, on a second license in the same database
after the server has stopped. Target: >= 500 activations/s over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

from bench.common import Report, Row, percent, print_report, rate
from bench.load import LoadResult, Request, load_tool, run_load
from bench.server import RATE_LIMIT_NOTE, LicenseServerData, product_server

CONNECTIONS = 16
WARMUP_SECONDS, SECONDS = 1.0, 5.0
IN_PROCESS_SECONDS = 3.0
TARGET_PER_SECOND = 500.0


def _http(data: LicenseServerData) -> LoadResult:
    body = json.dumps({"license_key": data.license_keys[0], "fingerprint": "bench-http-{n}"})
    with product_server(data) as server:
        return run_load(
            port=server.port,
            server_pid=server.pid,
            requests=[Request("POST", "/v1/activations", {"Content-Type": "application/json"}, body)],
            connections=CONNECTIONS,
            seconds=SECONDS,
            warmup=WARMUP_SECONDS,
            tag="act",
        )


def _in_process(data: LicenseServerData) -> tuple[float, int, float]:
    """Activations per second calling the service directly, how many it made, and the CPU seconds of each."""
    from license_server.config import Settings
    from license_server.deployments.service import activate
    from license_server.runtime import Runtime

    async def main() -> tuple[float, int, float]:
        runtime = Runtime.build(
            Settings(data_dir=data.directory / "data", keys_dir=data.directory / "keys"),
        )
        key = data.license_keys[1]
        try:

            async def one(fingerprint: str) -> None:
                async with runtime.session_factory() as session:
                    result = await activate(session, runtime=runtime, license_key=key, fingerprint=fingerprint)
                    assert result.created

            for n in range(20):  # warm-up: connections, caches, the first signing
                await one(f"bench-warmup-{n}")
            count, started, cpu_started = 0, time.perf_counter(), time.process_time()
            while (elapsed := time.perf_counter() - started) < IN_PROCESS_SECONDS:
                await one(f"bench-in-process-{count}")
                count += 1
            return count / elapsed, count, (time.process_time() - cpu_started) / count
        finally:
            await runtime.close()

    return asyncio.run(main())


def run() -> Report:
    with tempfile.TemporaryDirectory(prefix="bench-activations-") as directory:
        data = LicenseServerData.create(Path(directory), licenses=2)
        http = _http(data)
        in_process, made, cpu_each = _in_process(data)

    created = http.count(201)
    per_second = created / http.seconds
    server_cpu_each = http.server_cpu * http.seconds / max(1, sum(http.statuses.values()))
    rows = [
        Row(
            f"activations via `POST /v1/activations`, {CONNECTIONS} conns (SQLite)",
            rate(per_second),
            "in-process `service.activate`, one at a time",
            rate(in_process),
            f"{percent(per_second / in_process)} of in-process; target ≥ {TARGET_PER_SECOND:.0f}/s",
            per_second >= TARGET_PER_SECOND,
        )
    ]
    notes = [
        f"activations: load by {load_tool()}, {WARMUP_SECONDS:g}s warm-up then {SECONDS:g}s measured, distinct "
        f"fingerprints on one unlimited license ({created:,} created in the measured run, after the warm-up's); "
        f"statuses {http.status_summary()}; latency p50/p90/p99 {http.p50_ms:.1f}/{http.p90_ms:.1f}/"
        f"{http.p99_ms:.1f} ms; CPU: server {http.server_cpu:.0%}, {http.tool} {http.generator_cpu:.0%}, other "
        f"processes {http.other_cpu:.0%} of a core, i.e. {server_cpu_each * 1000:.2f} ms of server CPU per "
        f"activation (concurrent ones share transactions: SQLite group commit). In-process: {made:,} activations in "
        f"{IN_PROCESS_SECONDS:g}s on a second license of the same database, after the server stopped, "
        f"{cpu_each * 1000:.2f} ms of CPU each (one at a time, so one transaction each).",
        RATE_LIMIT_NOTE,
    ]
    if created < 0.99 * sum(http.statuses.values()) or http.socket_errors:
        notes.append("**activations: suspicious** — not every answer was 201 Created.")
    if http.other_cpu > 0.25:
        notes.append(
            f"**activations: the machine was busy with other work** ({http.other_cpu:.0%} of a core outside the "
            "benchmark): absolute figures are depressed."
        )
    return Report(rows, notes)


def main() -> None:
    print_report(run())


if __name__ == "__main__":
    main()
