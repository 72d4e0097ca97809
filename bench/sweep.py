"""The lifecycle sweep over 1,000,000 licenses on SQLite against the same set-based SQL written by hand.

A database migrated by the product (Alembic) is filled with the sqlite3 module: one customer, a million licenses
in a realistic mix (most unchanged; some entering the notice window, past grace, gone quiet, revoked, recovering)
and 200,000 activations (some past their heartbeat deadline). The file is copied, and each copy is swept once in
its own subprocess: ``license_server.lifecycle.jobs.sweep`` through SQLAlchemy/aiosqlite on one, the hand-written
UPDATE ... CASE / INSERT INTO events SELECT statements through the sqlite3 module on the other, both in one
transaction with the product's connection pragmas. The two must leave identical results. Targets: product time
<= 2x raw; peak RSS of the product's process < 300 MB.

Then the indexed sweep (issue 15): the same million licenses *settled* (every status up to date as of a minute
before, every ``next_transition_at`` written by the product's own SQL), with 1,000 licenses entering their notice
window in that minute. The scheduled sweep (``jobs.sweep``, which visits only the licenses whose next transition
came) and the full sweep it replaced (``jobs.full_sweep``) each run once on their own copy, in the same run; both
must leave identical results. Target: the indexed sweep <= 10 % of the full sweep's time.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, Report, Row, print_report

LICENSES, ACTIVATIONS = 1_000_000, 200_000
NOW = datetime(2027, 1, 1, tzinfo=UTC)
NOW_SQL = NOW.strftime("%Y-%m-%d %H:%M:%S.%f")  # how SQLAlchemy stores a DateTime on SQLite (checked in build)
DB_FILE = "license-server.db"
TARGET_RATIO = 2.0
TARGET_RSS_MB = 300.0
CHANGING = 1_000  # licenses whose status changes in the settled data set's minute
TARGET_INDEXED_SHARE = 0.10
SETTLED_AT = NOW - timedelta(minutes=1)
DAY = 86_400
# The same pragmas the product's engine sets on every connection (license_server/db/session.py).
PRAGMAS = ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=30000")


# -- the data set -----------------------------------------------------------------------------------------------
def _at(seconds: str) -> str:
    """SQL for NOW + ``seconds`` (an SQL expression), formatted as SQLAlchemy stores timestamps on SQLite."""
    return f"strftime('%Y-%m-%d %H:%M:%S', '{NOW_SQL[:19]}', ({seconds}) || ' seconds') || '.000000'"


def _days(days: str) -> str:
    return _at(f"({days}) * {DAY} + jitter")


# By b = row number mod 100. Stored status first, then what the sweep should make of it:
#   0-49, 95-99  active, healthy                          unchanged
#   50-59        active, expires in 10 days              -> expiring EXPIRES_SOON (event)
#   60-64        active, expired 30 days ago (grace 7)   -> expired (event)
#   65-69        active, last check-in 10 days ago       -> lost (event)
#   70-74        expiring, expires in 10 days             unchanged
#   75-79        expired 100 days ago                     unchanged
#   80-84        inactive, never activated                unchanged
#   85-87        active, revoked                         -> inactive REVOKED (no event)
#   88-89        inactive, suspended                      unchanged
#   90-92        lost, checked in yesterday              -> active (recovered event)
#   93-94        active, expired 2 days ago (grace 7)    -> expiring IN_GRACE_PERIOD (event)
_EXPIRES_DAYS = (
    "CASE WHEN b BETWEEN 50 AND 59 OR b BETWEEN 70 AND 74 THEN 10 WHEN b BETWEEN 60 AND 64 THEN -30 "
    "WHEN b BETWEEN 75 AND 79 THEN -100 WHEN b BETWEEN 93 AND 94 THEN -2 ELSE 200 END"
)
_NEVER_ACTIVATED = "b BETWEEN 80 AND 84"
_CHECK_IN_DAYS = "CASE WHEN b BETWEEN 65 AND 69 THEN -10 ELSE -1 END"
_STORED = (
    "CASE WHEN b BETWEEN 70 AND 74 THEN 'expiring|EXPIRES_SOON' WHEN b BETWEEN 75 AND 79 THEN 'expired|EXPIRED' "
    "WHEN b BETWEEN 80 AND 84 THEN 'inactive|NOT_ACTIVATED' WHEN b BETWEEN 88 AND 89 THEN 'inactive|SUSPENDED' "
    "WHEN b BETWEEN 90 AND 92 THEN 'lost|HEARTBEAT_MISSED' ELSE 'active|ACTIVE' END"
)

FILL_LICENSES = f"""
INSERT INTO licenses (
    id, customer_id, plan_id, key_hash, key_hint, starts_at, expires_at, terms, notes, metadata,
    suspended_at, revoked_at, first_activated_at, last_check_in_at, status, status_reason, created_at, updated_at,
    expiring_at, grace_ends_at, heartbeat_deadline, heartbeat_seconds, enforcement,
    previous_status, status_changed_at, sweep_mark
)
WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < :count),
numbered AS (SELECT i % 100 AS b, (i * 7919) % 3600 AS jitter FROM seq),
rows AS (SELECT b, jitter, lower(hex(randomblob(32))) AS key_hash, {_STORED} AS stored FROM numbered)
SELECT
    lower(hex(randomblob(16))), :customer_id, NULL, key_hash, upper(substr(key_hash, 1, 4)),
    {_days("-400")}, {_days(_EXPIRES_DAYS)}, '{{"grace_days": 7}}', '', '{{}}',
    CASE WHEN b BETWEEN 88 AND 89 THEN {_days("-5")} END,
    CASE WHEN b BETWEEN 85 AND 87 THEN {_days("-5")} END,
    CASE WHEN {_NEVER_ACTIVATED} THEN NULL ELSE {_days("-300")} END,
    CASE WHEN {_NEVER_ACTIVATED} THEN NULL ELSE {_days(_CHECK_IN_DAYS)} END,
    substr(stored, 1, instr(stored, '|') - 1), substr(stored, instr(stored, '|') + 1),
    {_days("-400")}, {_days("-400")},
    {_days(f"({_EXPIRES_DAYS}) - 30")}, {_days(f"({_EXPIRES_DAYS}) + 7")},
    CASE WHEN {_NEVER_ACTIVATED} THEN NULL ELSE {_days(f"({_CHECK_IN_DAYS}) + 7")} END,
    {7 * DAY}, 'restrict', NULL, NULL, NULL
FROM rows
"""  # noqa: S608 - SQL assembled from this module's own constants, no input

# Every fifth license has an activation; by a = (rowid / 5) mod 20: 0-2 past the deadline (-> lost, event),
# 3 already lost, 4 deactivated long ago, the rest checked in recently.
FILL_ACTIVATIONS = f"""
INSERT INTO activations (
    id, license_id, fingerprint, hostname, product_version, metadata, token_hash, token_hint,
    created_at, last_seen_at, heartbeat_deadline, lost_at, sweep_mark, deactivated_at, deactivated_by
)
SELECT
    lower(hex(randomblob(16))), id, 'fp-' || n, 'host-' || n, '1.4.2', '{{}}', lower(hex(randomblob(32))), 'tok' || a,
    {_days("-300")},
    {_days("CASE WHEN a <= 2 THEN -8 WHEN a <= 4 THEN -17 ELSE -1 END")},
    {_days("CASE WHEN a <= 2 THEN -1 WHEN a <= 4 THEN -10 ELSE 6 END")},
    CASE WHEN a = 3 THEN {_days("-3")} END, NULL,
    CASE WHEN a = 4 THEN {_days("-20")} END, CASE WHEN a = 4 THEN 'bench' END
FROM (SELECT id, rowid AS n, (rowid / 5) % 20 AS a, (rowid * 7919) % 3600 AS jitter FROM licenses WHERE rowid % 5 = 0)
LIMIT :count
"""  # noqa: S608 - as above


def build_database(data_dir: Path) -> Path:
    """Migrate a fresh database with the product's migrations, then fill it with the sqlite3 module."""
    from license_server.config import Settings
    from license_server.db.migrate import upgrade_database

    upgrade_database(Settings(data_dir=data_dir))
    path = data_dir / DB_FILE
    customer_id = secrets.token_hex(16)  # SQLAlchemy's Uuid on SQLite: 32 lower-case hex digits, no dashes
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in ("journal_mode=MEMORY", "synchronous=OFF", "cache_size=-262144"):
            connection.execute(f"PRAGMA {pragma}")
        # Secondary indexes are dropped while filling and recreated from their own DDL: the same schema, built faster.
        indexes = connection.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
            "AND tbl_name IN ('licenses', 'activations')"
        ).fetchall()
        connection.execute("BEGIN")
        for name, _ in indexes:
            connection.execute(f'DROP INDEX "{name}"')
        connection.execute(
            "INSERT INTO customers (id, name, contact_email, external_id, created_at, updated_at) "
            "VALUES (?, 'Bench Customer', NULL, NULL, ?, ?)",
            (customer_id, NOW_SQL, NOW_SQL),
        )
        connection.execute(FILL_LICENSES, {"count": LICENSES, "customer_id": customer_id})
        connection.execute(FILL_ACTIVATIONS, {"count": ACTIVATIONS})
        for _, sql in indexes:
            connection.execute(sql)
        connection.execute("COMMIT")
        connection.execute("PRAGMA journal_mode=WAL")  # as the product's own migrations leave the file
    finally:
        connection.close()
    _check_formats(path)
    return path


def _check_formats(path: Path) -> None:
    """The generated rows must read back through the product's own models, or the comparison means nothing."""
    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session

    from license_server.deployments.models import Activation
    from license_server.licenses.models import Customer, License

    engine = create_engine(f"sqlite:///{path}")
    try:
        with Session(engine) as session:
            license = session.scalars(select(License).limit(1)).one()
            customer = session.get(Customer, license.customer_id)
            activation = session.scalars(select(Activation).limit(1)).one()
            if customer is None or activation.license_id is None or license.grace_ends_at <= license.expiring_at:
                raise RuntimeError("the generated rows do not read back through the product's models")
    finally:
        engine.dispose()


# -- the two sweeps, each in its own process --------------------------------------------------------------------
_STATUS = """CASE
        WHEN revoked_at IS NOT NULL THEN 'inactive'
        WHEN suspended_at IS NOT NULL THEN 'inactive'
        WHEN starts_at > :now THEN 'inactive'
        WHEN grace_ends_at <= :now THEN 'expired'
        WHEN first_activated_at IS NULL THEN 'inactive'
        WHEN heartbeat_deadline < :now THEN 'lost'
        WHEN expires_at <= :now THEN 'expiring'
        WHEN expiring_at <= :now THEN 'expiring'
        ELSE 'active' END"""
_REASON = """CASE
        WHEN revoked_at IS NOT NULL THEN 'REVOKED'
        WHEN suspended_at IS NOT NULL THEN 'SUSPENDED'
        WHEN starts_at > :now THEN 'NOT_STARTED'
        WHEN grace_ends_at <= :now THEN 'EXPIRED'
        WHEN first_activated_at IS NULL THEN 'NOT_ACTIVATED'
        WHEN heartbeat_deadline < :now THEN 'HEARTBEAT_MISSED'
        WHEN expires_at <= :now THEN 'IN_GRACE_PERIOD'
        WHEN expiring_at <= :now THEN 'EXPIRES_SOON'
        ELSE 'ACTIVE' END"""
RAW_SWEEP = (
    f"""UPDATE licenses SET
        previous_status = status,
        status = {_STATUS},
        status_reason = {_REASON},
        status_changed_at = :now, sweep_mark = :mark, updated_at = :updated_at
    WHERE {_STATUS} != status OR {_REASON} != status_reason""",  # noqa: S608 - constants only
    """INSERT INTO events (type, occurred_at, license_id, data)
    SELECT type, :now, id, '{}' FROM (
        SELECT id, CASE
            WHEN status = 'expired' THEN 'license.expired'
            WHEN status = 'lost' THEN 'license.lost'
            WHEN previous_status = 'lost' AND status IN ('active', 'expiring') THEN 'license.recovered'
            WHEN status = 'expiring' AND previous_status != 'expiring' THEN 'license.expiring_soon'
        END AS type
        FROM licenses WHERE sweep_mark = :mark
    ) WHERE type IS NOT NULL""",
    """UPDATE activations SET lost_at = :now, sweep_mark = :mark
    WHERE deactivated_at IS NULL AND lost_at IS NULL AND heartbeat_deadline < :now""",
    """INSERT INTO events (type, occurred_at, license_id, activation_id, data)
    SELECT 'activation.lost', :now, license_id, id, '{}' FROM activations WHERE sweep_mark = :mark""",
)


def raw_sweep(path: Path) -> tuple[float, list[int]]:
    connection = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        for pragma in PRAGMAS:
            connection.execute(f"PRAGMA {pragma}")
        params = {
            "now": NOW_SQL,
            "mark": secrets.randbits(62),
            "updated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
        }
        started = time.perf_counter()
        connection.execute("BEGIN")
        counts = [connection.execute(statement, params).rowcount for statement in RAW_SWEEP]
        connection.execute("COMMIT")
        elapsed = time.perf_counter() - started
    finally:
        connection.close()
    return elapsed, [counts[0], counts[2], counts[1] + counts[3]]


def product_sweep(path: Path, *, indexed: bool = False) -> tuple[float, list[int]]:
    """The product's full sweep (the one every minute before issue 15), or with ``indexed`` the scheduled sweep."""
    from license_server.config import Settings
    from license_server.db.session import create_engine, create_session_factory
    from license_server.lifecycle.jobs import full_sweep
    from license_server.lifecycle.jobs import sweep as indexed_sweep

    sweep = indexed_sweep if indexed else full_sweep

    async def main() -> tuple[float, list[int]]:
        engine = create_engine(Settings(data_dir=path.parent))
        try:
            async with engine.connect():  # open the pooled connection (and set its pragmas) outside the timing
                pass
            async with create_session_factory(engine)() as session:
                started = time.perf_counter()
                counts = await sweep(session, now=NOW)
                return time.perf_counter() - started, list(counts)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def outcome(path: Path) -> dict[str, Any]:
    """What a sweep left behind, to check the two did the same work."""
    connection = sqlite3.connect(path)
    try:
        query = {
            "licenses": "SELECT status, status_reason, previous_status, status_changed_at IS NOT NULL, count(*) "
            "FROM licenses GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
            "events": "SELECT type, occurred_at, count(*) FROM events GROUP BY 1, 2 ORDER BY 1, 2",
            "activations": "SELECT lost_at, count(*) FROM activations GROUP BY 1 ORDER BY 1",
        }
        return {name: [list(row) for row in connection.execute(sql)] for name, sql in query.items()}
    finally:
        connection.close()


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child(kind: str, path: Path) -> None:
    """Run one sweep in this process and print its time, counts, peak memory and outcome as JSON."""
    if kind == "raw":
        seconds, counts = raw_sweep(path)
    else:
        seconds, counts = product_sweep(path, indexed=kind == "indexed")
    peak = peak_rss_mb()  # before the outcome queries, which are not part of the sweep
    print(json.dumps({"seconds": seconds, "counts": counts, "peak_rss_mb": peak, "outcome": outcome(path)}))


def _run_child(kind: str, path: Path) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "bench.sweep", "child", kind, str(path)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{kind} sweep failed: {completed.stdout}{completed.stderr}")
    result: dict[str, Any] = json.loads(completed.stdout.splitlines()[-1])
    return result


def settle(path: Path) -> None:
    """Bring the data set to rest a minute before NOW with the product's own code, then make CHANGING licenses
    enter their notice window within that minute (their stored status still right at SETTLED_AT)."""
    from sqlalchemy import text, update
    from sqlalchemy.ext.asyncio import AsyncSession

    from license_server.config import Settings
    from license_server.db.session import create_engine, create_session_factory
    from license_server.licenses.models import License
    from license_server.lifecycle.jobs import full_sweep
    from license_server.lifecycle.transitions import next_transition_expression

    async def main() -> None:
        engine = create_engine(Settings(data_dir=path.parent))
        try:
            session: AsyncSession
            async with create_session_factory(engine)() as session:
                await full_sweep(session, now=SETTLED_AT)
                schedule = next_transition_expression(SETTLED_AT)
                await session.execute(
                    update(License).values(next_transition_at=schedule).execution_options(synchronize_session=False)
                )
                # Healthy active licenses (b 0-49 of the mix) whose 30-day notice window opens 30 s before NOW.
                opens = (NOW - timedelta(seconds=30)).strftime("%Y-%m-%d %H:%M:%S.%f")
                expires = (NOW - timedelta(seconds=30) + timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S.%f")
                grace_ends = (NOW - timedelta(seconds=30) + timedelta(days=37)).strftime("%Y-%m-%d %H:%M:%S.%f")
                await session.execute(
                    text(
                        "UPDATE licenses SET expiring_at = :opens, expires_at = :expires, grace_ends_at = :grace, "
                        "next_transition_at = :opens WHERE id IN (SELECT id FROM licenses WHERE status = 'active' "
                        "AND rowid % 100 BETWEEN 0 AND 49 AND heartbeat_deadline > :now ORDER BY rowid LIMIT :n)"
                    ),
                    {"opens": opens, "expires": expires, "grace": grace_ends, "now": NOW_SQL, "n": CHANGING},
                )
                await session.commit()
        finally:
            await engine.dispose()

    asyncio.run(main())
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # both copies start from the same plain file
    finally:
        connection.close()


def run() -> Report:
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as directory:
        root = Path(directory)
        started = time.perf_counter()
        source = build_database(root / "source")
        build_seconds = time.perf_counter() - started
        size_mb = source.stat().st_size / 2**20
        copies = {}
        for kind in ("raw", "product"):
            (root / kind).mkdir()
            copies[kind] = root / kind / DB_FILE
            shutil.copyfile(source, copies[kind])
        source.unlink()
        raw = _run_child("raw", copies["raw"])
        product = _run_child("product", copies["product"])

    ratio = product["seconds"] / raw["seconds"]
    changed, lost, events = product["counts"]
    rows = [
        Row(
            f"lifecycle sweep, {LICENSES:,} licenses + {ACTIVATIONS:,} activations (SQLite)",
            f"{product['seconds']:.2f} s",
            "hand-written set-based SQL via sqlite3",
            f"{raw['seconds']:.2f} s",
            f"{ratio:.2f}x (target ≤ {TARGET_RATIO:g}x)",
            ratio <= TARGET_RATIO,
        ),
        Row(
            "lifecycle sweep peak RSS (product process)",
            f"{product['peak_rss_mb']:.0f} MB",
            "raw SQL process",
            f"{raw['peak_rss_mb']:.0f} MB",
            f"target < {TARGET_RSS_MB:.0f} MB",
            product["peak_rss_mb"] < TARGET_RSS_MB,
        ),
    ]
    same = product["counts"] == raw["counts"] and product["outcome"] == raw["outcome"]
    notes = [
        f"sweep: {changed:,} licenses changed status, {lost:,} activations lost, {events:,} events; database "
        f"{size_mb:,.0f} MB built in {build_seconds:.0f}s; each sweep ran once in its own process on its own copy "
        f"of the file, one transaction, with the product's pragmas (WAL, synchronous=NORMAL); peak RSS is VmHWM.",
        "sweep: both sweeps left identical statuses, events and activations."
        if same
        else f"**sweep: the two sweeps disagree** — product {product['counts']}, raw {raw['counts']}.",
    ]
    indexed_rows, indexed_notes = run_indexed()
    return Report(rows + indexed_rows, notes + indexed_notes)


def run_indexed() -> tuple[list[Row], list[str]]:
    with tempfile.TemporaryDirectory(prefix="bench-sweep-indexed-") as directory:
        root = Path(directory)
        started = time.perf_counter()
        source = build_database(root / "source")
        settle(source)
        build_seconds = time.perf_counter() - started
        copies = {}
        for kind in ("full", "indexed"):
            (root / kind).mkdir()
            copies[kind] = root / kind / DB_FILE
            shutil.copyfile(source, copies[kind])
        source.unlink()
        full = _run_child("product", copies["full"])
        indexed = _run_child("indexed", copies["indexed"])
    share = indexed["seconds"] / full["seconds"]
    rows = [
        Row(
            f"indexed sweep, {LICENSES:,} licenses of which {indexed['counts'][0]:,} change (SQLite)",
            f"{indexed['seconds']:.3f} s",
            "the full sweep it replaced, same data",
            f"{full['seconds']:.2f} s",
            f"{share:.1%} (target ≤ {TARGET_INDEXED_SHARE:.0%})",
            share <= TARGET_INDEXED_SHARE,
        )
    ]
    same = indexed["counts"] == full["counts"] and indexed["outcome"] == full["outcome"]
    notes = [
        f"indexed sweep: data set settled at NOW - 1 min by the product's full sweep and next_transition_at SQL, "
        f"then {CHANGING:,} licenses made to enter their notice window within that minute; built in "
        f"{build_seconds:.0f}s; counts (changed, activations lost, events): indexed {indexed['counts']}, "
        f"full {full['counts']}.",
        "indexed sweep: both sweeps left identical statuses, events and activations."
        if same
        else f"**indexed sweep: the two sweeps disagree** — indexed {indexed['counts']}, full {full['counts']}.",
    ]
    return rows, notes


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "child":
        child(sys.argv[2], Path(sys.argv[3]))
        return
    if sys.argv[1:] == ["indexed"]:  # only the indexed sweep against the full one
        print_report(Report(*run_indexed()))
        return
    print_report(run())


if __name__ == "__main__":
    main()
