"""The credits period rollover for 100,000 accounts against hand-written set-based SQL, on SQLite and PostgreSQL.

"Rollover" is what the scheduled job ``billing.credits.rollover`` does at a period end
(``license_server.billing.credits.service.roll_over_credits``): every grant whose cycle has ended forfeits what it
holds (a forfeit movement each, the grant emptied) and every active subscription on a plan with included credits is
granted its new cycle's credits (a grant and a grant movement each), in one transaction.

Setup: 100,000 accounts, each with an active monthly subscription to one plan with 100 included credits, anchored
at a different instant of January 2026 (days 1-28, so no month-end clamping), and the rollover run once at
2026-02-15 (each account holds one unspent grant). The database is then copied: the product rolls one copy over at
2026-03-15 (all 100,000 grants forfeit, 100,000 new ones), the hand SQL the other; both must leave the same number of
grants and movements. The hand SQL knows what the product cannot (one plan, no month-end anchors), so it is the
lower bound a set-based rollover could reach. Target (issue 12): the product within 2x of it.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.common import Report, Row, print_report
from bench.server import (
    LicenseServerData,
    _postgres_admin,
    cli,
    postgres_database,
    postgres_unavailable,
)

ACCOUNTS = 100_000
INCLUDED = 100
FIRST_ROLLOVER = datetime(2026, 2, 15, tzinfo=UTC)
ROLLOVER = datetime(2026, 3, 15, tzinfo=UTC)
TARGET_FACTOR = 2.0
CHUNK = 5_000

_SQLITE_HAND = """
BEGIN IMMEDIATE;
INSERT INTO credit_movements (account_id, kind, amount, flex, grant_id, description, metadata, occurred_at)
    SELECT account_id, 'forfeit', -remaining, 0, id, '', '{{}}', expires_at FROM credit_grants
    WHERE remaining > 0 AND expires_at IS NOT NULL AND expires_at <= '{now}';
UPDATE credit_grants SET remaining = 0 WHERE remaining > 0 AND expires_at IS NOT NULL AND expires_at <= '{now}';
INSERT INTO credit_grants (account_id, subscription_id, kind, amount, remaining, granted_at, expires_at, cycle_start)
    SELECT account_id, id, 'included', {units}, {units}, '{now}',
        strftime('%Y-%m-%d %H:%M:%S', anchor_at, '+' || (months + 1) || ' months') || substr(anchor_at, 20),
        strftime('%Y-%m-%d %H:%M:%S', anchor_at, '+' || months || ' months') || substr(anchor_at, 20)
    FROM (
        SELECT id, account_id, anchor_at,
            (CAST(substr('{now}', 1, 4) AS INTEGER) - CAST(substr(anchor_at, 1, 4) AS INTEGER)) * 12
            + CAST(substr('{now}', 6, 2) AS INTEGER) - CAST(substr(anchor_at, 6, 2) AS INTEGER)
            - (substr(anchor_at, 9) > substr('{now}', 9)) AS months
        FROM billing_subscriptions WHERE status = 'active' AND anchor_at <= '{now}'
    ) WHERE true
    ON CONFLICT (subscription_id, cycle_start) DO NOTHING;
INSERT INTO credit_movements (account_id, kind, amount, flex, grant_id, description, metadata, occurred_at)
    SELECT account_id, 'grant', amount, 0, id, 'included credits for the cycle', '{{}}', granted_at
    FROM credit_grants WHERE granted_at = '{now}' AND subscription_id IS NOT NULL;
COMMIT;
"""

_POSTGRES_HAND = [
    """INSERT INTO credit_movements (account_id, kind, amount, flex, grant_id, description, metadata, occurred_at)
    SELECT account_id, 'forfeit', -remaining, 0, id, '', '{}', expires_at FROM credit_grants
    WHERE remaining > 0 AND expires_at IS NOT NULL AND expires_at <= $1""",
    "UPDATE credit_grants SET remaining = 0 WHERE remaining > 0 AND expires_at IS NOT NULL AND expires_at <= $1",
    """INSERT INTO credit_grants (account_id, subscription_id, kind, amount, remaining, granted_at, expires_at,
        cycle_start)
    SELECT account_id, id, 'included', $2, $2, $1, anchor_at + make_interval(months => months + 1),
        anchor_at + make_interval(months => months)
    FROM (
        SELECT id, account_id, anchor_at,
            (extract(year FROM age($1, anchor_at)) * 12 + extract(month FROM age($1, anchor_at)))::int AS months
        FROM billing_subscriptions WHERE status = 'active' AND anchor_at <= $1
    ) AS cycles
    ON CONFLICT (subscription_id, cycle_start) DO NOTHING""",
    """INSERT INTO credit_movements (account_id, kind, amount, flex, grant_id, description, metadata, occurred_at)
    SELECT account_id, 'grant', amount, 0, id, 'included credits for the cycle', '{}', granted_at
    FROM credit_grants WHERE granted_at = $1 AND subscription_id IS NOT NULL""",
]


def _settings(data: LicenseServerData, database_url: str | None) -> Any:
    from license_server.config import Settings

    return Settings(
        data_dir=data.directory / "data", keys_dir=data.directory / "keys", database_url=database_url or None
    )


def _prepare(data: LicenseServerData, database_url: str | None) -> None:
    """The plan and platform through the CLI; the accounts and subscriptions in bulk; the first rollover."""
    catalogue = {"plans": [{"code": "credits", "name": "Credits", "billing": {"included_credits": str(INCLUDED)}}]}
    path = data.directory / "catalogue.json"
    path.write_text(json.dumps(catalogue))
    cli(data.env, "billing", "plans", "import", str(path))
    platform = cli(data.env, "billing", "platforms", "create", "--name", "Rollover")
    asyncio.run(_populate(data, database_url, uuid.UUID(str(platform["id"]))))


async def _populate(data: LicenseServerData, database_url: str | None, platform_id: uuid.UUID) -> None:
    from sqlalchemy import insert, select

    from license_server.billing.accounts.models import BillingAccount, Subscription
    from license_server.billing.credits.service import roll_over_credits
    from license_server.licenses.models import Plan
    from license_server.runtime import Runtime

    runtime = Runtime.build(_settings(data, database_url))
    try:
        async with runtime.session_factory() as session:
            plan_id = await session.scalar(select(Plan.id).where(Plan.code == "credits"))
            created = datetime(2026, 1, 1, tzinfo=UTC)
            for first in range(0, ACCOUNTS, CHUNK):
                accounts, subscriptions = [], []
                for n in range(first, min(ACCOUNTS, first + CHUNK)):
                    account_id = uuid.uuid4()
                    anchor = created + timedelta(days=n % 28, seconds=(n * 7919) % 86400)
                    accounts.append(
                        {
                            "id": account_id,
                            "platform_id": platform_id,
                            "external_id": f"acct-{n}",
                            "flex_enabled": False,
                            "created_at": created,
                        }
                    )
                    subscriptions.append(
                        {
                            "id": uuid.uuid4(),
                            "account_id": account_id,
                            "plan_id": plan_id,
                            "status": "active",
                            "anchor_at": anchor,
                            "trial_ends_at": None,
                            "canceled_at": None,
                            "created_at": anchor,
                            "updated_at": anchor,
                        }
                    )
                await session.execute(insert(BillingAccount), accounts)
                await session.execute(insert(Subscription), subscriptions)
            await session.commit()
        async with runtime.session_factory() as session:
            first_result = await roll_over_credits(session, state=runtime.billing, now=FIRST_ROLLOVER)
        if first_result.granted != ACCOUNTS:
            raise RuntimeError(f"the first rollover granted {first_result.granted}, not {ACCOUNTS}")
    finally:
        await runtime.close()


async def _product(data: LicenseServerData, database_url: str | None) -> tuple[float, int, int]:
    from license_server.billing.credits.service import roll_over_credits
    from license_server.runtime import Runtime

    runtime = Runtime.build(_settings(data, database_url))
    try:
        async with runtime.session_factory() as session:
            started = time.perf_counter()
            result = await roll_over_credits(session, state=runtime.billing, now=ROLLOVER)
            return time.perf_counter() - started, result.forfeited, result.granted
    finally:
        await runtime.close()


def _sqlite_stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _hand_sqlite(path: Path) -> float:
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        script = _SQLITE_HAND.format(now=_sqlite_stamp(ROLLOVER), units=INCLUDED * 10**6)
        started = time.perf_counter()
        connection.executescript(script)
        return time.perf_counter() - started
    finally:
        connection.close()


def _counts_sqlite(path: Path) -> tuple[int, int]:
    connection = sqlite3.connect(path)
    try:
        grants = connection.execute("SELECT count(*) FROM credit_grants").fetchone()[0]
        movements = connection.execute("SELECT count(*) FROM credit_movements").fetchone()[0]
        return int(grants), int(movements)
    finally:
        connection.close()


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def _hand_postgres(url: str) -> float:
    import asyncpg

    connection = await asyncpg.connect(_plain(url))
    try:
        started = time.perf_counter()
        async with connection.transaction():
            for statement in _POSTGRES_HAND:
                arguments: list[Any] = [ROLLOVER] + ([Decimal(INCLUDED)] if "$2" in statement else [])
                await connection.execute(statement, *arguments)
        return time.perf_counter() - started
    finally:
        await connection.close()


async def _counts_postgres(url: str) -> tuple[int, int]:
    import asyncpg

    connection = await asyncpg.connect(_plain(url))
    try:
        grants = await connection.fetchval("SELECT count(*) FROM credit_grants")
        movements = await connection.fetchval("SELECT count(*) FROM credit_movements")
        return int(grants), int(movements)
    finally:
        await connection.close()


def _row(backend: str, product: float, hand: float, same: bool) -> Row:
    factor = product / hand
    return Row(
        f"credits rollover, {ACCOUNTS:,} accounts ({backend})",
        f"{product:.2f} s",
        f"hand set-based SQL ({backend})",
        f"{hand:.2f} s",
        f"{factor:.2f}x (target ≤ {TARGET_FACTOR:g}x)",
        factor <= TARGET_FACTOR and same,
    )


def _run_sqlite() -> tuple[Row, str]:
    with tempfile.TemporaryDirectory(prefix="bench-rollover-") as directory:
        data = LicenseServerData.create(Path(directory), 0)
        _prepare(data, None)
        database = data.directory / "data" / "license-server.db"
        copy = data.directory / "hand.db"
        with sqlite3.connect(database) as source, sqlite3.connect(copy) as target:
            source.backup(target)
        product, forfeited, granted = asyncio.run(_product(data, None))
        hand = _hand_sqlite(copy)
        counts = _counts_sqlite(database), _counts_sqlite(copy)
    return _row("SQLite", product, hand, counts[0] == counts[1]), _note("SQLite", forfeited, granted, *counts)


def _run_postgres() -> tuple[Row, str]:
    with (
        tempfile.TemporaryDirectory(prefix="bench-rollover-pg-") as directory,
        postgres_database("bench_rollover") as url,
    ):
        data = LicenseServerData.create(Path(directory), 0, database_url=url)
        _prepare(data, url)
        name = url.rsplit("/", 1)[1]
        copy_name = f"{name}_hand"
        _postgres_admin(f'CREATE DATABASE "{copy_name}" TEMPLATE "{name}"')
        copy_url = url.rsplit("/", 1)[0] + "/" + copy_name
        try:
            product, forfeited, granted = asyncio.run(_product(data, url))
            hand = asyncio.run(_hand_postgres(copy_url))
            counts = asyncio.run(_counts_postgres(url)), asyncio.run(_counts_postgres(copy_url))
        finally:
            _postgres_admin(f'DROP DATABASE IF EXISTS "{copy_name}" WITH (FORCE)')
    return _row("PostgreSQL", product, hand, counts[0] == counts[1]), _note("PostgreSQL", forfeited, granted, *counts)


def _note(backend: str, forfeited: int, granted: int, product: tuple[int, int], hand: tuple[int, int]) -> str:
    verdict = "the same" if product == hand else "**DIFFERENT** (the figures are not comparable)"
    return (
        f"credits rollover ({backend}): the product forfeited {forfeited:,} grants and granted {granted:,}; grants / "
        f"movements after it {product[0]:,} / {product[1]:,}, after the hand SQL {hand[0]:,} / {hand[1]:,}: {verdict}."
    )


def run() -> Report:
    row, note = _run_sqlite()
    rows, notes = [row], [note]
    unavailable = postgres_unavailable()
    if unavailable:
        notes.append(f"**credits rollover: PostgreSQL not run** — {unavailable}.")
    else:
        row, note = _run_postgres()
        rows.append(row)
        notes.append(note)
    return Report(rows, notes)


def main() -> None:
    print_report(run())


if __name__ == "__main__":
    main()
