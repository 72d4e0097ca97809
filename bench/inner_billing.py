"""Dify Cloud's hot billing reads over HTTP against a bare Litestar JSON route served the same way, in the same run.

Dify calls ``GET /inner/billing/subscription/info`` and ``/quota/info`` twice each for every console features request,
uncached (contract §8). 8 workspaces of a Dify Cloud platform on seed 000's catalogue (imported and created with the
CLI, as staff would) are asked for over 32 keep-alive connections with ``Billing-Api-Secret-Key`` set, round-robin.
Target (issue 13): each >= 60 % of the bare route's requests/s.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import httpx

from bench.common import Report, Row, percent, print_report, rate
from bench.load import LoadResult, Request, load_tool
from bench.poll import CONNECTIONS, SECONDS, WARMUP_SECONDS, _cpu, _load, _server_software
from bench.server import LicenseServerData, bare_server, cli, product_server
from license_server.inner_billing.controllers import SECRET_HEADER

WORKSPACES = 8
TARGET = 0.6
CATALOGUE = Path(__file__).parents[1] / "examples" / "plans" / "dify-cloud.json"


def _platform(data: LicenseServerData) -> str:
    cli(data.env, "billing", "plans", "import", str(CATALOGUE))
    created = cli(data.env, "billing", "platforms", "create", "--name", "Dify Cloud", "--default-plan", "dify-sandbox")
    return str(created["secret"])


def _check(base_url: str, secret: str, tenants: list[str]) -> None:
    with httpx.Client(base_url=base_url, timeout=10, headers={SECRET_HEADER: secret}) as client:
        for tenant in tenants:
            info = client.get("/inner/billing/subscription/info", params={"tenant_id": tenant})
            quota = client.get("/inner/billing/quota/info", params={"tenant_id": tenant})
            if info.status_code != 200 or info.json()["subscription"]["plan"] != "sandbox":
                raise RuntimeError(f"subscription/info answered {info.status_code}: {info.text[:300]}")
            if quota.status_code != 200 or "api_rate_limit" not in quota.json():
                raise RuntimeError(f"quota/info answered {quota.status_code}: {quota.text[:300]}")


def _row(label: str, result: LoadResult, bare: LoadResult) -> Row:
    share = result.rps / bare.rps
    return Row(
        f"{label}, {CONNECTIONS} conns",
        rate(result.rps, " req/s"),
        "bare Litestar `GET /bare`",
        rate(bare.rps, " req/s"),
        f"{percent(share)} (target ≥ {percent(TARGET)})",
        share >= TARGET,
    )


def _per_cpu(label: str, result: LoadResult, bare: LoadResult) -> Row:
    """Requests per server CPU-second: context when other work on the machine starves one run more than another."""
    mine, base = result.rps / max(result.server_cpu, 1e-9), bare.rps / max(bare.server_cpu, 1e-9)
    return Row(
        f"`{label}` requests per server CPU-second (context on a busy machine)",
        rate(mine, " req/cpu-s"),
        "bare, the same",
        rate(base, " req/cpu-s"),
        percent(mine / base),
        None,
    )


def run() -> Report:
    tenants = [str(uuid.UUID(int=n + 1)) for n in range(WORKSPACES)]
    with tempfile.TemporaryDirectory(prefix="bench-inner-billing-") as directory:
        data = LicenseServerData.create(Path(directory), 0)
        secret = _platform(data)
        headers = {SECRET_HEADER: secret}
        with product_server(data) as product, bare_server(data.env, data.directory) as bare:
            _check(product.base_url, secret, tenants)
            bare_result = _load(bare.port, bare.pid, [Request("GET", "/bare", {})], "bare")
            info = _load(
                product.port,
                product.pid,
                [Request("GET", f"/inner/billing/subscription/info?tenant_id={t}", headers) for t in tenants],
                "subscription-info",
            )
            quota = _load(
                product.port,
                product.pid,
                [Request("GET", f"/inner/billing/quota/info?tenant_id={t}", headers) for t in tenants],
                "quota-info",
            )

    rows = [
        _row("Dify `GET /inner/billing/subscription/info`", info, bare_result),
        _row("Dify `GET /inner/billing/quota/info`", quota, bare_result),
        *[
            _per_cpu(label, result, bare_result)
            for label, result in (("subscription/info", info), ("quota/info", quota))
        ],
    ]
    notes = [
        f"inner_billing: load by {'wrk' if load_tool() == 'wrk' else 'bench/loadgen.py (asyncio)'} with "
        f"{CONNECTIONS} keep-alive connections, {WARMUP_SECONDS:g}s warm-up then {SECONDS:g}s measured; "
        f"{WORKSPACES} workspaces round-robin; served by {_server_software()}.",
        f"inner_billing: statuses — subscription/info: {info.status_summary()}; quota/info: {quota.status_summary()};"
        f" bare: {bare_result.status_summary()}.",
        f"inner_billing: p99 ms — subscription/info {info.p99_ms:.1f}, quota/info {quota.p99_ms:.1f}, "
        f"bare {bare_result.p99_ms:.1f}.",
        f"inner_billing: CPU — bare: {_cpu(bare_result)}; subscription/info: {_cpu(info)}; quota/info: {_cpu(quota)}.",
    ]
    for label, result in (("subscription/info", info), ("quota/info", quota)):
        if result.count(200) < 0.99 * sum(result.statuses.values()) or result.socket_errors:
            notes.append(f"**inner_billing: suspicious** — the {label} run did not answer 200 throughout.")
        if result.other_cpu > 0.25:
            notes.append(
                f"**inner_billing: the machine was busy with other work during the {label} run** "
                f"({result.other_cpu:.0%} of a core outside the benchmark): absolute figures are depressed."
            )
    return Report(rows, notes)


def main() -> None:
    print_report(run())


if __name__ == "__main__":
    main()
