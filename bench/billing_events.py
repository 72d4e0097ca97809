"""Batched usage-event ingestion: events/s through ``POST /v1/billing/accounts/{id}/events`` against a hand-written
``executemany ... ON CONFLICT DO NOTHING`` into the same table, on SQLite and on PostgreSQL, in the same run.

The product: 8 keep-alive connections post batches of 500 fresh events (each with an id unique to the run, an
agent, an app, one line item the rate card prices and one with its cost given) for a few seconds, one account per
connection's turn round-robin; every batch must be accepted whole (201, checked by counting the stored rows after).
The baseline: one process inserting batches of the same events (same columns, same shape: line items as JSON, a
sha-256 request digest each) with the database's plain driver (sqlite3, asyncpg), one transaction per batch, for as
long. Targets (issue 12): >= 20,000 events/s and >= 50 % of the baseline, on each backend.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import tempfile
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.common import Report, Row, percent, print_report, rate
from bench.load import LoadResult, Request, load_tool, run_load
from bench.poll import _cpu
from bench.server import LicenseServerData, cli, postgres_database, postgres_unavailable, product_server

CONNECTIONS = 8
BATCH = 500
ACCOUNTS = 4
WARMUP_SECONDS, SECONDS = 2.0, 6.0
PER_SECOND_TARGET, SHARE_TARGET = 20_000.0, 0.5
RATE_KEY = "llm:gpt-4o"
INSERT = (
    "INSERT INTO billing_usage_events (account_id, event_id, occurred_at, agent, app, line_items, cost, "
    "request_digest, created_at) VALUES ({}) ON CONFLICT (account_id, event_id) DO NOTHING"
)


def _platform(data: LicenseServerData) -> str:
    catalogue = {
        "plans": [{"code": "metered", "name": "Metered", "billing": {"rate_card": {RATE_KEY: "0.00001"}}}],
    }
    path = data.directory / "catalogue.json"
    path.write_text(json.dumps(catalogue))
    cli(data.env, "billing", "plans", "import", str(path))
    created = cli(data.env, "billing", "platforms", "create", "--name", "Events", "--default-plan", "metered")
    return str(created["secret"])


def _event(event_id: str) -> dict[str, Any]:
    return {
        "id": event_id,
        "agent": "agent-7",
        "app": "support-bot",
        "line_items": [
            {"type": "llm", "name": "gpt-4o", "quantity": 1200},
            {"type": "tool", "name": "search", "cost": "0.002"},
        ],
    }


def _batch_body() -> str:
    return json.dumps({"events": [_event(f"{{n}}-{i}") for i in range(BATCH)]}, separators=(",", ":"))


def _http(data: LicenseServerData, secret: str) -> tuple[LoadResult, int]:
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    body = _batch_body()
    requests = [Request("POST", f"/v1/billing/accounts/ev-{n}/events", headers, body) for n in range(ACCOUNTS)]
    with product_server(data) as server:
        result = run_load(
            port=server.port,
            server_pid=server.pid,
            requests=requests,
            connections=CONNECTIONS,
            seconds=SECONDS,
            warmup=WARMUP_SECONDS,
            tag="events",
        )
    return result, _stored_events(data)


def _stored_events(data: LicenseServerData) -> int:
    url = data.env.get("LICENSE_SERVER_DATABASE_URL")
    if url:
        return asyncio.run(_pg_count(url))
    connection = sqlite3.connect(data.directory / "data" / "license-server.db")
    try:
        return int(connection.execute("SELECT count(*) FROM billing_usage_events").fetchone()[0])
    finally:
        connection.close()


async def _pg_count(url: str) -> int:
    import asyncpg

    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return int(await connection.fetchval("SELECT count(*) FROM billing_usage_events"))
    finally:
        await connection.close()


def _hand_rows(batch: int, now: datetime) -> list[tuple[str, str, str, str | None, str | None, str, Decimal]]:
    """One batch as a hand-written ingester would prepare it: (event id, line items JSON, digest, ...)."""
    rows = []
    for i in range(BATCH):
        event = _event(f"hand-{batch}-{i}")
        priced = [{**event["line_items"][0], "cost": "0.012"}, event["line_items"][1]]
        digest = hashlib.sha256(json.dumps(event, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        rows.append((event["id"], json.dumps(priced), digest, event["agent"], event["app"], "", Decimal("0.014")))
    return rows


def _hand_sqlite(path: Path, account_id: Any) -> float:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    statement = INSERT.format(", ".join("?" * 9))
    count, batch = 0, 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < SECONDS:
        now = datetime.now(UTC).replace(tzinfo=None)
        stamp = now.strftime("%Y-%m-%d %H:%M:%S.%f")
        rows = _hand_rows(batch, now)
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(
            statement,
            [
                (account_id, event_id, stamp, agent, app, items, format(cost, "f"), digest, stamp)
                for event_id, items, digest, agent, app, _, cost in rows
            ],
        )
        connection.execute("COMMIT")
        count += len(rows)
        batch += 1
    connection.close()
    return count / elapsed


async def _hand_postgres(url: str, account_id: uuid.UUID) -> float:
    import asyncpg

    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    statement = INSERT.format(", ".join(f"${i}" for i in range(1, 10)))
    count, batch = 0, 0
    started = time.perf_counter()
    try:
        while (elapsed := time.perf_counter() - started) < SECONDS:
            now = datetime.now(UTC)
            rows = _hand_rows(batch, now)
            async with connection.transaction():
                await connection.executemany(
                    statement,
                    [
                        (account_id, event_id, now, agent, app, items, cost, digest, now)
                        for event_id, items, digest, agent, app, _, cost in rows
                    ],
                )
            count += len(rows)
            batch += 1
    finally:
        await connection.close()
    return count / elapsed


def _account_id_sqlite(path: Path) -> Any:
    connection = sqlite3.connect(path)
    try:
        return connection.execute("SELECT id FROM billing_accounts WHERE external_id = 'ev-0'").fetchone()[0]
    finally:
        connection.close()


async def _account_id_postgres(url: str) -> uuid.UUID:
    import asyncpg

    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        value = await connection.fetchval("SELECT id FROM billing_accounts WHERE external_id = 'ev-0'")
        return uuid.UUID(str(value))
    finally:
        await connection.close()


def _rows(backend: str, result: LoadResult, stored: int, hand: float) -> tuple[list[Row], list[str]]:
    accepted = result.count(201)
    per_second = accepted * BATCH / result.seconds
    share = per_second / hand
    # Every batch of the warm-up and the measured run was fresh: the rows stored must cover every accepted batch.
    whole = stored >= accepted * BATCH
    row = Row(
        f"billing events via `POST …/events`, {BATCH}/batch, {CONNECTIONS} conns ({backend})",
        rate(per_second, " events/s"),
        f"hand `executemany … ON CONFLICT DO NOTHING` ({backend})",
        rate(hand, " events/s"),
        f"{percent(share)} (target ≥ {percent(SHARE_TARGET)}); target ≥ {PER_SECOND_TARGET:,.0f}/s",
        per_second >= PER_SECOND_TARGET and share >= SHARE_TARGET and whole,
    )
    notes = [
        f"billing events ({backend}): {accepted:,} batches accepted in {result.seconds:.1f}s by {load_tool()}; "
        f"statuses {result.status_summary()}; p99 {result.p99_ms:.0f} ms; CPU {_cpu(result)}; {stored:,} events "
        "stored after the warm-up and the measured run."
    ]
    if accepted == 0:
        notes.append(
            f"**billing events ({backend}): no batch was answered within the measured run** (each took longer): "
            "the figure is 0, not a rate."
        )
    elif not whole or accepted < 0.99 * sum(result.statuses.values()):
        notes.append(f"**billing events ({backend}): suspicious** — not every batch was accepted and stored whole.")
    return [row], notes


def _run_sqlite() -> tuple[list[Row], list[str]]:
    with tempfile.TemporaryDirectory(prefix="bench-events-") as directory:
        data = LicenseServerData.create(Path(directory), 0)
        result, stored = _http(data, _platform(data))
        database = data.directory / "data" / "license-server.db"
        hand = _hand_sqlite(database, _account_id_sqlite(database))
    return _rows("SQLite", result, stored, hand)


def _run_postgres() -> tuple[list[Row], list[str]]:
    with tempfile.TemporaryDirectory(prefix="bench-events-pg-") as directory, postgres_database("bench_events") as url:
        data = LicenseServerData.create(Path(directory), 0, database_url=url)
        result, stored = _http(data, _platform(data))
        hand = asyncio.run(_hand_postgres(url, asyncio.run(_account_id_postgres(url))))
    return _rows("PostgreSQL", result, stored, hand)


def run() -> Report:
    rows, notes = _run_sqlite()
    unavailable = postgres_unavailable()
    if unavailable:
        notes.append(f"**billing events: PostgreSQL not run** — {unavailable}.")
    else:
        more_rows, more_notes = _run_postgres()
        rows += more_rows
        notes += more_notes
    notes.append(
        "billing events: the baseline runs after the server has stopped, into the same table of the same database, "
        "one batch per transaction; its events carry the same columns, but it neither parses JSON nor prices."
    )
    return Report(rows, notes)


def main() -> None:
    print_report(run())


if __name__ == "__main__":
    main()
