"""The console's pages stay as fast with 100,000 licenses and 100,000 billing accounts as with 100 of each.

Two data directories are set up by the CLI (``init --dev``) and filled with the sqlite3 module (the licenses with the
sweep benchmark's realistic mix of statuses; accounts of one platform, 1% of them past due), then each is served by
the real app in this process. A signed-in owner asks for the license list, the account list and the dashboard; the
time is the server's (ASGI in process: no sockets, no browser), ``ROUNDS`` requests per page after a warm-up.
Target: p50 and p95 of the large data set <= 2x those of the small one, page by page.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import Report, Row, print_report
from bench.server import bench_env, cli
from bench.sweep import DB_FILE, FILL_LICENSES, NOW, NOW_SQL

SMALL, LARGE = 100, 100_000
ROUNDS, WARMUP = 60, 10
TARGET_RATIO = 2.0
PAGES = {"license list": "/console/licenses", "account list": "/console/billing/accounts", "dashboard": "/console"}
PASSWORD = "bench-password-not-a-secret"  # noqa: S105 - a throwaway database's staff user

FILL_ACCOUNTS = """
WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < :count)
INSERT INTO billing_accounts (id, platform_id, external_id, customer_id, flex_enabled, created_at)
SELECT lower(hex(randomblob(16))), :platform_id, 'ws-' || i, NULL, 0,
       strftime('%Y-%m-%d %H:%M:%S', :now, (-i) || ' seconds') || '.000000'
FROM seq
"""
FILL_PAST_DUE = """
INSERT INTO billing_subscriptions (id, account_id, plan_id, status, anchor_at, trial_ends_at, canceled_at,
                                   created_at, updated_at)
SELECT lower(hex(randomblob(16))), id, :plan_id, 'past_due', :now, NULL, NULL, :now, :now
FROM billing_accounts WHERE rowid % 100 = 0
"""


def build(directory: Path, rows: int) -> dict[str, str]:
    env = bench_env(directory)
    cli(env, "init", "--dev")
    connection = sqlite3.connect(directory / "data" / DB_FILE, isolation_level=None)
    try:
        connection.execute("BEGIN")
        customer_id, platform_id, plan_id = (secrets.token_hex(16) for _ in range(3))
        connection.execute(
            "INSERT INTO customers (id, name, contact_email, external_id, created_at, updated_at) "
            "VALUES (?, 'Bench Customer', NULL, NULL, ?, ?)",
            (customer_id, NOW_SQL, NOW_SQL),
        )
        connection.execute(FILL_LICENSES, {"count": rows, "customer_id": customer_id})
        connection.execute(
            "INSERT INTO plans (id, code, name, description, terms, billing, created_at, updated_at) "
            "VALUES (?, 'bench', 'Bench', '', '{}', '{}', ?, ?)",
            (plan_id, NOW_SQL, NOW_SQL),
        )
        connection.execute(
            "INSERT INTO billing_platforms (id, name, billing_enabled, default_plan_id, restrictive_defaults, "
            "created_at, created_by, updated_at) VALUES (?, 'Bench Cloud', 1, NULL, '{}', ?, 'bench', ?)",
            (platform_id, NOW_SQL, NOW_SQL),
        )
        connection.execute(FILL_ACCOUNTS, {"count": rows, "platform_id": platform_id, "now": NOW_SQL[:19]})
        connection.execute(FILL_PAST_DUE, {"plan_id": plan_id, "now": NOW_SQL})
        connection.execute("COMMIT")
        connection.execute("ANALYZE")  # as a long-lived database would have statistics
    finally:
        connection.close()
    return env


async def measure(env: dict[str, str]) -> dict[str, list[float]]:
    from license_server.app import create_app
    from license_server.auth.tokens import Role
    from license_server.config import Settings
    from license_server.console import service as staff
    from license_server.runtime import Runtime

    settings = Settings(
        data_dir=Path(env["LICENSE_SERVER_DATA_DIR"]),
        keys_dir=Path(env["LICENSE_SERVER_KEYS_DIR"]),
        rate_limit_failed_auth_per_address=10_000,
    )
    runtime = Runtime.build(settings, clock=lambda: NOW)
    try:
        async with runtime.session_factory() as db:
            await staff.create_staff_user(
                db, email="owner@bench.example", password=PASSWORD, role=Role.OWNER, clock=runtime.clock
            )
        transport = httpx.ASGITransport(app=create_app(runtime), client=("127.0.0.1", 50000))  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            form = await client.get("/console/sign-in")
            token = form.text.split('name="_csrf" value="', 1)[1].split('"', 1)[0]
            signed_in = await client.post(
                "/console/sign-in", data={"email": "owner@bench.example", "password": PASSWORD, "_csrf": token}
            )
            if signed_in.status_code != 303:
                raise RuntimeError(f"sign-in answered {signed_in.status_code}")
            timings: dict[str, list[float]] = {}
            for name, path in PAGES.items():
                samples = []
                for round_ in range(WARMUP + ROUNDS):
                    began = time.perf_counter()
                    response = await client.get(path)
                    elapsed = time.perf_counter() - began
                    if response.status_code != 200:
                        raise RuntimeError(f"{path} answered {response.status_code}: {response.text[:300]}")
                    if round_ >= WARMUP:
                        samples.append(elapsed)
                timings[name] = samples
            return timings
    finally:
        await runtime.close()


def _p(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1]


def run() -> Report:
    report = Report()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        results = {}
        for rows in (SMALL, LARGE):
            env = build(root / f"rows-{rows}", rows)
            results[rows] = asyncio.run(measure(env))
    for name in PAGES:
        small, large = results[SMALL][name], results[LARGE][name]
        for label, q in (("p50", 50), ("p95", 95)):
            big, base = _p(large, q) * 1000, _p(small, q) * 1000
            ratio = big / base
            report.rows.append(
                Row(
                    f"console {name} {label}, {LARGE:,} rows",
                    f"{big:.1f} ms",
                    f"same page, {SMALL} rows",
                    f"{base:.1f} ms",
                    f"{ratio:.2f}x (target <= {TARGET_RATIO:g}x)",
                    ratio <= TARGET_RATIO,
                )
            )
    report.notes.append(
        f"console: {ROUNDS} requests per page after {WARMUP} warm-up ones, in process (ASGI), SQLite, signed in "
        f"as an owner; {LARGE:,} licenses and {LARGE:,} billing accounts (1% past due) against {SMALL} of each."
    )
    return report


if __name__ == "__main__":
    print_report(run())
