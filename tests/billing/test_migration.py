"""Migration 0005_billing_core on a database that already has plans: they keep working, with no billing terms."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import create_async_engine

from license_server.db.migrate import alembic_config, upgrade_database
from tests.conftest import make_settings
from tests.db.test_migrations import empty_database_url

__all__ = ["empty_database_url"]


def test_existing_plans_get_empty_billing_terms_and_downgrade_works(
    empty_database_url: str | None,
    tmp_path: Path,
    shared_keys_dir: Path,
) -> None:
    settings = make_settings(tmp_path / "data", shared_keys_dir, empty_database_url)
    command.upgrade(alembic_config(settings), "0004")
    now = datetime(2026, 11, 23, tzinfo=UTC)

    async def seed_and_read() -> object:
        engine = create_async_engine(settings.resolved_database_url)
        async with engine.begin() as connection:
            await connection.execute(
                sa.text(
                    "INSERT INTO plans (id, code, name, description, terms, created_at, updated_at)"
                    " VALUES (:id, 'old', 'Old', '', '{}', :now, :now)"
                ),
                {"id": uuid.uuid4().hex if settings.is_sqlite else str(uuid.uuid4()), "now": now},
            )
        await engine.dispose()
        await asyncio.to_thread(upgrade_database, settings)
        engine = create_async_engine(settings.resolved_database_url)
        async with engine.connect() as connection:
            billing = (await connection.execute(sa.text("SELECT billing FROM plans"))).scalar_one()
        await engine.dispose()
        return billing

    assert asyncio.run(seed_and_read()) in ({}, "{}")
    command.downgrade(alembic_config(settings), "0004")
    command.upgrade(alembic_config(settings), "head")
