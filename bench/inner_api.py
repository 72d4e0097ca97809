"""Dify's hot call, ``GET /inner/api/info``, over HTTP against a bare Litestar JSON route served the same way.

Dify asks for /info on console requests whenever its 5-second cache lapses, from every API process. 8 licenses, each
with an inner-API credential made by the CLI (``licenses credentials create``), are asked for over 32 keep-alive
connections with ``Enterprise-Api-Secret-Key`` set, round-robin. The baseline is ``@get("/bare") -> dict`` in its own
uvicorn process with the same flags, loaded the same way in the same run. Target: at least 50 % of the baseline's
requests/s.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import httpx

from bench.common import Report, Row, percent, print_report, rate
from bench.load import Request, load_tool
from bench.poll import CONNECTIONS, SECONDS, WARMUP_SECONDS, _cpu, _load, _server_software
from bench.server import LicenseServerData, bare_server, cli, product_server
from license_server.inner_api.controllers import SECRET_HEADER

LICENSES = 8  # the load settings (32 connections, 2 s warm-up, 6 s measured) are the poll benchmark's
TARGET_SHARE = 0.5


def _secrets(data: LicenseServerData) -> list[str]:
    """One credential per license, through the CLI as vendor staff would make them."""
    secrets = []
    for _ in range(LICENSES):
        issued = cli(data.env, "licenses", "issue", "--customer", data.customer_id, "--expires", "2030-01-01")
        secrets.append(str(cli(data.env, "licenses", "credentials", "create", str(issued["id"]))["secret"]))
    return secrets


def _check(base_url: str, secrets: list[str]) -> None:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        for secret in secrets:
            answer = client.get("/inner/api/info", headers={SECRET_HEADER: secret})
            if answer.status_code != 200 or answer.json()["License"]["status"] != "active":
                raise RuntimeError(f"/inner/api/info answered {answer.status_code}: {answer.text[:300]}")


def _tool() -> str:
    return "wrk -t1 (Lua script sets the secret header)" if load_tool() == "wrk" else "bench/loadgen.py (asyncio)"


def run() -> Report:
    with tempfile.TemporaryDirectory(prefix="bench-inner-api-") as directory:
        data = LicenseServerData.create(Path(directory), 0)
        secrets = _secrets(data)
        with product_server(data) as product, bare_server(data.env, data.directory) as bare:
            _check(product.base_url, secrets)
            bare_result = _load(bare.port, bare.pid, [Request("GET", "/bare", {})], "bare")
            requests = [Request("GET", "/inner/api/info", {SECRET_HEADER: secret}) for secret in secrets]
            info = _load(product.port, product.pid, requests, "inner-info")

    share = info.rps / bare_result.rps
    rows = [
        Row(
            f"Dify `GET /inner/api/info`, {CONNECTIONS} conns",
            rate(info.rps, " req/s"),
            "bare Litestar `GET /bare`",
            rate(bare_result.rps, " req/s"),
            f"{percent(share)} (target ≥ {percent(TARGET_SHARE)})",
            share >= TARGET_SHARE,
        ),
        Row(
            "`/inner/api/info` requests per server CPU-second (context on a busy machine)",
            rate(info.rps / max(info.server_cpu, 1e-9), " req/cpu-s"),
            "bare, the same",
            rate(bare_result.rps / max(bare_result.server_cpu, 1e-9), " req/cpu-s"),
            percent((info.rps / max(info.server_cpu, 1e-9)) / (bare_result.rps / max(bare_result.server_cpu, 1e-9))),
            None,
        ),
        Row(
            "inner /info p99 latency",
            f"{info.p99_ms:.1f} ms",
            "bare p99",
            f"{bare_result.p99_ms:.1f} ms",
            "reported for context",
            None,
        ),
    ]
    notes = [
        f"inner-api: load by {_tool()} with {CONNECTIONS} keep-alive connections, {WARMUP_SECONDS:g}s warm-up then "
        f"{SECONDS:g}s measured; {LICENSES} licenses' secrets round-robin; both apps served by {_server_software()}.",
        f"inner-api: statuses — /info run: {info.status_summary()}; bare: {bare_result.status_summary()}.",
        f"inner-api: p50/p90 ms — /info {info.p50_ms:.1f}/{info.p90_ms:.1f}, bare "
        f"{bare_result.p50_ms:.1f}/{bare_result.p90_ms:.1f}.",
        f"inner-api: CPU during the measured runs — bare: {_cpu(bare_result)}; /info: {_cpu(info)}.",
    ]
    if load_tool() != "wrk":
        notes.append("inner-api: wrk is not installed, so the asyncio generator made the load (understates both).")
    for label, result in (("/info run", info), ("bare", bare_result)):
        if result.count(200) < 0.99 * sum(result.statuses.values()) or result.socket_errors:
            notes.append(f"**inner-api: suspicious** — the {label} did not answer 200 throughout.")
        if result.other_cpu > 0.25:
            notes.append(
                f"**inner-api: the machine was busy with other work during the {label}** "
                f"({result.other_cpu:.0%} of a core outside the benchmark): absolute figures are depressed."
            )
    return Report(rows, notes)


def main() -> None:
    print_report(run())


if __name__ == "__main__":
    main()
