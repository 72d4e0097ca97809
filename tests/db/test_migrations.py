"""Upgrading a database that already holds licenses: the new sweep columns are backfilled from effective terms; and
processes that upgrade one database at the same moment (replicas starting together) all succeed."""

from __future__ import annotations

import asyncio
import fcntl
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import create_async_engine

from license_server.all_models import Base
from license_server.db.migrate import MIGRATION_LOCK_ID, alembic_config, upgrade_database
from license_server.events.webhooks import generate_secret
from license_server.signing.encryption import WEBHOOK_SECRETS, SecretBox
from license_server.signing.keys import load_secret_hashing_key
from tests.conftest import POSTGRES_ADMIN_URL, make_settings


@pytest.fixture
def empty_database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str | None]:
    """A database with no schema at all: a file for SQLite, a fresh database on PostgreSQL."""
    if backend == "sqlite":
        yield None
        return
    request.getfixturevalue("postgres_database")  # skips or fails exactly as the other PostgreSQL tests do
    import asyncpg

    name = f"ls_migration_{os.getpid()}_{uuid.uuid4().hex[:6]}"

    async def admin(statement: str) -> None:
        connection = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_upgrade_backfills_the_sweep_schedule_of_existing_licenses(
    empty_database_url: str | None, tmp_path: Path, shared_keys_dir: Path
) -> None:
    settings = make_settings(tmp_path / "data", shared_keys_dir, empty_database_url)
    command.upgrade(alembic_config(settings), "0001")
    expires = datetime(2027, 1, 31, tzinfo=UTC)
    seen = datetime(2026, 11, 1, tzinfo=UTC)
    customer_id, plan_id, license_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    now = datetime(2026, 11, 23, tzinfo=UTC)

    async def seed_and_read() -> tuple[Any, ...]:
        engine = create_async_engine(settings.resolved_database_url)
        # The models' tables give the column types (UUIDs, UTC timestamps); only 0001's columns are written.
        tables = Base.metadata.tables
        async with engine.begin() as connection:
            await connection.execute(
                tables["customers"].insert().values(id=customer_id, name="Old Corp", created_at=now, updated_at=now)
            )
            # Later columns (plans.billing, 0005) have Python-side defaults the 0001 schema cannot take.
            plans_0001 = sa.Table(
                "plans",
                sa.MetaData(),
                *(sa.Column(c.name, c.type) for c in tables["plans"].columns if c.name != "billing"),
            )
            await connection.execute(
                plans_0001.insert().values(
                    id=plan_id,
                    code="legacy",
                    name="Legacy",
                    description="",
                    created_at=now,
                    updated_at=now,
                    terms={"notice_days": 60, "heartbeat_window_days": 3},
                )
            )
            await connection.execute(
                tables["licenses"]
                .insert()
                .values(
                    id=license_id,
                    customer_id=customer_id,
                    plan_id=plan_id,
                    key_hash="h" * 64,
                    key_hint="ABCD",
                    starts_at=now - timedelta(days=100),
                    expires_at=expires,
                    terms={"grace_days": 10},
                    notes="",
                    metadata={},
                    first_activated_at=seen,
                    last_check_in_at=seen,
                    status="active",
                    status_reason="ACTIVE",
                    created_at=now,
                    updated_at=now,
                )
            )
        await engine.dispose()
        await asyncio.to_thread(upgrade_database, settings)
        engine = create_async_engine(settings.resolved_database_url)
        async with engine.connect() as connection:
            row = (
                await connection.execute(
                    sa.text(
                        "SELECT expiring_at, grace_ends_at, heartbeat_deadline, heartbeat_seconds, enforcement"
                        " FROM licenses"
                    )
                )
            ).one()
        await engine.dispose()
        return tuple(row)

    row = asyncio.run(seed_and_read())

    def aware(value: object) -> datetime:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        assert isinstance(moment, datetime)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

    assert aware(row[0]) == expires - timedelta(days=60)  # the plan's notice window
    assert aware(row[1]) == expires + timedelta(days=10)  # the license's own grace period
    assert aware(row[2]) == seen + timedelta(days=3)  # last check-in + the plan's heartbeat window
    assert (row[3], row[4]) == (3 * 24 * 3600, "restrict")


UPGRADERS = 3
LICENSE_SERVER = str(Path(sys.executable).parent / "license-server")


def _head_revision(settings: Any) -> str:
    from alembic.script import ScriptDirectory

    return str(ScriptDirectory.from_config(alembic_config(settings)).get_current_head())


async def _revisions(url: str) -> list[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return [row[0] for row in (await connection.execute(sa.text("SELECT version_num FROM alembic_version")))]
    finally:
        await engine.dispose()


def _cli_env(settings: Any, database_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LICENSE_SERVER_")}
    env["LICENSE_SERVER_DATA_DIR"] = str(settings.data_dir)
    if database_url:
        env["LICENSE_SERVER_DATABASE_URL"] = database_url
    return env


@pytest.mark.parametrize("starting_at", [None, "0003"], ids=["empty", "older"])
def test_processes_upgrading_one_database_at_the_same_moment_all_succeed(
    empty_database_url: str | None, tmp_path: Path, shared_keys_dir: Path, starting_at: str | None
) -> None:
    """Replicas start together: without serialised migrations all but one died with a duplicate-key (PostgreSQL)
    or table-exists (SQLite) error."""
    settings = make_settings(tmp_path / "data", shared_keys_dir, empty_database_url)
    if starting_at:
        command.upgrade(alembic_config(settings), starting_at)
    env = _cli_env(settings, empty_database_url)
    upgraders = [
        subprocess.Popen(
            [LICENSE_SERVER, "db", "upgrade"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(UPGRADERS)
    ]
    outputs = [upgrader.communicate(timeout=60)[0] for upgrader in upgraders]
    failed = [out for upgrader, out in zip(upgraders, outputs, strict=True) if upgrader.returncode != 0]
    assert not failed, failed[0][-2000:]
    assert asyncio.run(_revisions(settings.resolved_database_url)) == [_head_revision(settings)]


def test_a_process_that_finds_the_schema_current_does_not_wait_for_the_migration_lock(
    empty_database_url: str | None, tmp_path: Path, shared_keys_dir: Path
) -> None:
    """Someone else holds the migration lock (an upgrade in progress elsewhere): a current schema starts at once."""
    settings = make_settings(tmp_path / "data", shared_keys_dir, empty_database_url)
    upgrade_database(settings)
    env = _cli_env(settings, empty_database_url)

    def upgrade_in_a_process() -> None:
        # A process that waited for the lock would be killed by the timeout (and the test would fail).
        subprocess.run([LICENSE_SERVER, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=20)

    if empty_database_url is None:
        fd = os.open(f"{settings.data_dir / 'license-server.db'}.migration-lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            upgrade_in_a_process()
        finally:
            os.close(fd)
        return
    import asyncpg

    async def hold_lock_and_upgrade() -> None:
        holder = await asyncpg.connect(empty_database_url.replace("+asyncpg", ""))
        try:
            await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
            await asyncio.to_thread(upgrade_in_a_process)
        finally:
            await holder.close()

    asyncio.run(hold_lock_and_upgrade())


WEBHOOK_ENDPOINTS_0004 = sa.table(
    "webhook_endpoints",
    sa.column("id", sa.Uuid()),
    sa.column("url", sa.String()),
    sa.column("description", sa.String()),
    sa.column("event_types", sa.JSON()),
    sa.column("secret", sa.String()),
    sa.column("enabled", sa.Boolean()),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("last_event_id", sa.BigInteger()),
)


def test_upgrade_encrypts_existing_webhook_secrets_and_downgrade_restores_them(
    empty_database_url: str | None, tmp_path: Path, shared_keys_dir: Path
) -> None:
    settings = make_settings(tmp_path / "data", shared_keys_dir, empty_database_url)
    command.upgrade(alembic_config(settings), "0004")
    endpoints = {uuid.uuid4(): generate_secret() for _ in range(3)}
    box = SecretBox(load_secret_hashing_key(shared_keys_dir), purpose=WEBHOOK_SECRETS)

    async def execute(statement: Any) -> list[Any]:
        engine = create_async_engine(settings.resolved_database_url)
        try:
            async with engine.begin() as connection:
                result = await connection.execute(statement)
                return list(result.all()) if result.returns_rows else []
        finally:
            await engine.dispose()

    now = datetime(2026, 11, 30, tzinfo=UTC)
    rows = [
        {"id": i, "url": "https://hooks.example.com/", "description": "", "event_types": [], "secret": secret}
        | {"enabled": True, "created_at": now, "last_event_id": 0}
        for i, secret in endpoints.items()
    ]
    asyncio.run(execute(WEBHOOK_ENDPOINTS_0004.insert().values(rows)))

    upgrade_database(settings)

    stored = asyncio.run(execute(sa.select(Base.metadata.tables["webhook_endpoints"])))
    assert {row.id: box.open(row.encrypted_secret, bound_to=str(row.id)) for row in stored} == endpoints
    for row in stored:
        assert all(
            secret not in str(value) and secret.removeprefix("whsec_") not in str(value)
            for value in row
            for secret in endpoints.values()
        )
    assert len({row.encrypted_secret for row in stored}) == 3

    command.downgrade(alembic_config(settings), "0004")
    restored = asyncio.run(execute(sa.select(WEBHOOK_ENDPOINTS_0004.c.id, WEBHOOK_ENDPOINTS_0004.c.secret)))
    assert dict(restored) == endpoints
