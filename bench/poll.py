"""The poll path (``GET /v1/license``) over HTTP against a bare Litestar JSON route served the same way.

32 deployments (8 activations on each of 4 licenses, created through the CLI and the API) poll with their bearer
token over 32 keep-alive connections: once with If-None-Match set to the current ETag (304s, the common case), once
without (200s with the signed document). The baseline is ``@get("/bare") -> dict`` in its own uvicorn process with
the same flags, loaded the same way in the same run. Target: at least 50 % of the baseline's requests/s, p99 <= 20 ms.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

import httpx

from bench.common import Report, Row, percent, print_report, rate
from bench.load import LoadResult, Request, load_tool, run_load
from bench.server import (
    RATE_LIMIT_NOTE,
    UVICORN_FLAGS,
    LicenseServerData,
    activate,
    bare_server,
    product_server,
)

CONNECTIONS = 32
LICENSES, ACTIVATIONS_PER_LICENSE = 4, 8
WARMUP_SECONDS, SECONDS = 2.0, 6.0
TARGET_SHARE = 0.5
TARGET_P99_MS = 20.0


def _deployments(base_url: str, data: LicenseServerData) -> list[tuple[str, str]]:
    """Activate the deployments and return (token, current ETag) for each, checking a poll with it gives 304."""
    with httpx.Client(base_url=base_url, timeout=10) as client:
        tokens = [
            activate(client, key, f"bench-poll-{n}-{i}").token
            for n, key in enumerate(data.license_keys)
            for i in range(ACTIVATIONS_PER_LICENSE)
        ]
        deployments = []
        for token in tokens:  # activations re-sign the document; the first poll after them settles the ETag
            headers = {"Authorization": f"Bearer {token}"}
            etag = client.get("/v1/license", headers=headers).headers["ETag"]
            answer = client.get("/v1/license", headers={**headers, "If-None-Match": etag})
            if answer.status_code != 304:
                raise RuntimeError(f"a poll with the current ETag answered {answer.status_code}, not 304")
            deployments.append((token, etag))
    return deployments


def _load(port: int, pid: int, requests: list[Request], tag: str) -> LoadResult:
    return run_load(
        port=port,
        server_pid=pid,
        requests=requests,
        connections=CONNECTIONS,
        seconds=SECONDS,
        warmup=WARMUP_SECONDS,
        tag=tag,
    )


def _server_software() -> str:
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"uvicorn (http={http}, loop={loop}) {' '.join(UVICORN_FLAGS)}"


def _tool() -> str:
    tool = load_tool()
    return "wrk -t1 (Lua script sets Authorization / If-None-Match)" if tool == "wrk" else "bench/loadgen.py (asyncio)"


def _cpu(result: LoadResult) -> str:
    return (
        f"server {result.server_cpu:.0%}, {result.tool} {result.generator_cpu:.0%}, "
        f"other processes {result.other_cpu:.0%} of a core"
    )


def run() -> Report:
    with tempfile.TemporaryDirectory(prefix="bench-poll-") as directory:
        data = LicenseServerData.create(Path(directory), LICENSES)
        with product_server(data) as product, bare_server(data.env, data.directory) as bare:
            deployments = _deployments(product.base_url, data)
            bare_result = _load(bare.port, bare.pid, [Request("GET", "/bare", {})], "bare")
            conditional = [
                Request("GET", "/v1/license", {"Authorization": f"Bearer {token}", "If-None-Match": etag})
                for token, etag in deployments
            ]
            not_modified = _load(product.port, product.pid, conditional, "poll-304")
            plain = [Request("GET", "/v1/license", {"Authorization": f"Bearer {token}"}) for token, _ in deployments]
            full = _load(product.port, product.pid, plain, "poll-200")

    rows: list[Row] = []
    for label, result in (("304 Not Modified", not_modified), ("200 with document", full)):
        share = result.rps / bare_result.rps
        rows.append(
            Row(
                f"poll `GET /v1/license` → {label}, {CONNECTIONS} conns",
                rate(result.rps, " req/s"),
                "bare Litestar `GET /bare`",
                rate(bare_result.rps, " req/s"),
                f"{percent(share)} (target ≥ {percent(TARGET_SHARE)})",
                share >= TARGET_SHARE,
            )
        )
        rows.append(
            Row(
                f"poll p99 latency ({label})",
                f"{result.p99_ms:.1f} ms",
                "bare p99",
                f"{bare_result.p99_ms:.1f} ms",
                f"target ≤ {TARGET_P99_MS:.0f} ms",
                result.p99_ms <= TARGET_P99_MS,
            )
        )
    notes = [
        f"poll: load by {_tool()} with {CONNECTIONS} keep-alive connections, {WARMUP_SECONDS:g}s warm-up "
        f"then {SECONDS:g}s measured per run; {len(deployments)} deployment tokens ({LICENSES} licenses x "
        f"{ACTIVATIONS_PER_LICENSE} activations) used round-robin; both apps served by {_server_software()}.",
        f"poll: statuses — 304 run: {not_modified.status_summary()}; 200 run: {full.status_summary()}; "
        f"bare: {bare_result.status_summary()}.",
        f"poll: p50/p90 ms — 304 run {not_modified.p50_ms:.1f}/{not_modified.p90_ms:.1f}, 200 run "
        f"{full.p50_ms:.1f}/{full.p90_ms:.1f}, bare {bare_result.p50_ms:.1f}/{bare_result.p90_ms:.1f}.",
        f"poll: CPU during the measured runs — bare: {_cpu(bare_result)}; 304 run: {_cpu(not_modified)}; "
        f"200 run: {_cpu(full)}.",
        RATE_LIMIT_NOTE,
    ]
    if load_tool() != "wrk":
        notes.append(
            "poll: wrk is not installed (`apt-get install wrk`), so the asyncio generator made the load; it shares "
            "the 2 cores with the server and understates both apps."
        )
    for label, result, expected in (("304 run", not_modified, 304), ("200 run", full, 200), ("bare", bare_result, 200)):
        if result.count(expected) < 0.99 * sum(result.statuses.values()) or result.socket_errors:
            notes.append(f"**poll: suspicious** — the {label} did not answer {expected} throughout.")
        if result.other_cpu > 0.25:
            notes.append(
                f"**poll: the machine was busy with other work during the {label}** "
                f"({result.other_cpu:.0%} of a core outside the benchmark): absolute figures are depressed."
            )
        if result.generator_cpu > 0.9:
            notes.append(f"**poll: the load generator used {result.generator_cpu:.0%} of a core in the {label}.**")
    return Report(rows, notes)


def main() -> None:
    print_report(run())


if __name__ == "__main__":
    main()
