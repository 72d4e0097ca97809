"""Hosted billing's hot calls over HTTP against a bare Litestar JSON route served the same way, in the same run.

Platforms call the limits report and the read-only check on every request, and reserve before every run. 8 accounts
of one platform on a plan with monthly quotas (made with the CLI, as staff would) are asked over 32 keep-alive
connections with the platform secret, round-robin. Targets (issue 12): limits and check >= 60 % of the bare route's
requests/s; reserve (every hold committed to the database before it is answered) >= 40 %. Commit is not measured
here: its path names the reservation, which the load generators cannot vary per request.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import httpx

from bench.common import Report, Row, percent, print_report, rate
from bench.load import LoadResult, Request, load_tool
from bench.poll import CONNECTIONS, SECONDS, WARMUP_SECONDS, _cpu, _load, _server_software
from bench.server import LicenseServerData, bare_server, cli, product_server

ACCOUNTS = 8
KEY = "app_invocation.max_monthly_count"
READ_TARGET, RESERVE_TARGET = 0.6, 0.4


def _platform(data: LicenseServerData) -> str:
    catalogue = {
        "plans": [
            {"code": "bench", "name": "Bench", "billing": {"quotas": {KEY: {"kind": "monthly", "limit": 10**12}}}}
        ]
    }
    path = data.directory / "catalogue.json"
    path.write_text(json.dumps(catalogue))
    cli(data.env, "billing", "plans", "import", str(path))
    return str(
        cli(data.env, "billing", "platforms", "create", "--name", "Bench Cloud", "--default-plan", "bench")["secret"]
    )


def _check(base_url: str, secret: str) -> None:
    with httpx.Client(base_url=base_url, timeout=10, headers={"Authorization": f"Bearer {secret}"}) as client:
        for n in range(ACCOUNTS):
            answer = client.get(f"/v1/billing/accounts/org-{n}/limits")
            if answer.status_code != 200 or answer.json()["data"]["plan"] != "bench":
                raise RuntimeError(f"limits answered {answer.status_code}: {answer.text[:300]}")


def _row(label: str, result: LoadResult, bare: LoadResult, target: float) -> Row:
    share = result.rps / bare.rps
    return Row(
        f"{label}, {CONNECTIONS} conns",
        rate(result.rps, " req/s"),
        "bare Litestar `GET /bare`",
        rate(bare.rps, " req/s"),
        f"{percent(share)} (target ≥ {percent(target)})",
        share >= target,
    )


def run() -> Report:
    with tempfile.TemporaryDirectory(prefix="bench-billing-") as directory:
        data = LicenseServerData.create(Path(directory), 0)
        secret = _platform(data)
        auth = {"Authorization": f"Bearer {secret}"}
        with product_server(data) as product, bare_server(data.env, data.directory) as bare:
            _check(product.base_url, secret)
            bare_result = _load(bare.port, bare.pid, [Request("GET", "/bare", {})], "bare")
            limits = _load(
                product.port,
                product.pid,
                [Request("GET", f"/v1/billing/accounts/org-{n}/limits", auth) for n in range(ACCOUNTS)],
                "limits",
            )
            check = _load(
                product.port,
                product.pid,
                [Request("GET", f"/v1/billing/accounts/org-{n}/limits/{KEY}/check", auth) for n in range(ACCOUNTS)],
                "check",
            )
            body = json.dumps({"key": KEY, "amount": 1, "request_id": "{n}", "ttl_seconds": 600})
            headers = {**auth, "Content-Type": "application/json"}
            reserve = _load(
                product.port,
                product.pid,
                [
                    Request("POST", f"/v1/billing/accounts/org-{n}/usage/reserve", headers, body)
                    for n in range(ACCOUNTS)
                ],
                "reserve",
            )

    rows = [
        _row("billing `GET …/limits`", limits, bare_result, READ_TARGET),
        _row("billing `GET …/limits/{key}/check`", check, bare_result, READ_TARGET),
        _row("billing `POST …/usage/reserve` (SQLite, durable)", reserve, bare_result, RESERVE_TARGET),
    ]
    notes = [
        f"billing: load by {'wrk' if load_tool() == 'wrk' else 'bench/loadgen.py (asyncio)'} with {CONNECTIONS} "
        f"keep-alive connections, {WARMUP_SECONDS:g}s warm-up then {SECONDS:g}s measured; {ACCOUNTS} accounts "
        f"round-robin; served by {_server_software()}.",
        f"billing: statuses — limits: {limits.status_summary()}; check: {check.status_summary()}; reserve: "
        f"{reserve.status_summary()}; bare: {bare_result.status_summary()}.",
        f"billing: p99 ms — limits {limits.p99_ms:.1f}, check {check.p99_ms:.1f}, reserve {reserve.p99_ms:.1f}, "
        f"bare {bare_result.p99_ms:.1f}.",
        f"billing: CPU — bare: {_cpu(bare_result)}; limits: {_cpu(limits)}; reserve: {_cpu(reserve)}.",
    ]
    for label, result in (("limits", limits), ("check", check), ("reserve", reserve)):
        expected = 201 if label == "reserve" else 200
        if result.count(expected) < 0.99 * sum(result.statuses.values()) or result.socket_errors:
            notes.append(f"**billing: suspicious** — the {label} run did not answer {expected} throughout.")
        if result.other_cpu > 0.25:
            notes.append(
                f"**billing: the machine was busy with other work during the {label} run** "
                f"({result.other_cpu:.0%} of a core outside the benchmark): absolute figures are depressed."
            )
    return Report(rows, notes)


def main() -> None:
    print_report(run())


if __name__ == "__main__":
    main()
