"""Upgrading a database that already holds licenses: the new sweep columns are backfilled from effective terms."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import create_async_engine

from license_server.db.migrate import alembic_config, upgrade_database
from license_server.db.models import Base
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
                "plans", sa.MetaData(), *(c.copy() for c in tables["plans"].columns if c.name != "billing")
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
