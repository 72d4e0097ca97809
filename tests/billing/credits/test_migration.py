"""Migration 0006_billing_credits: it creates exactly the tables the models describe, and downgrades cleanly."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import create_async_engine

from license_server.all_models import Base
from license_server.db.migrate import alembic_config, upgrade_database
from tests.conftest import make_settings
from tests.db.test_migrations import empty_database_url

__all__ = ["empty_database_url"]
CREDIT_TABLES = {"credit_grants", "credit_movements", "credit_draws"}


def _inspect(url: str, read: Any) -> Any:
    async def run() -> Any:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(read)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _table_of(difference: Any) -> str | None:
    """The table an Alembic autogenerate difference is about (column changes come as a list of one tuple)."""
    operation, *rest = difference[0] if isinstance(difference, list) else difference
    if operation.endswith("_table"):
        return str(rest[0].name)
    if operation.endswith(("_index", "_constraint")):
        return str(rest[0].table.name)
    if operation.endswith("_fk"):
        return str(rest[0].parent.name)
    return str(rest[1])  # add_column / remove_column / modify_*: (schema, table, ...)


def _credit_differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return [d for d in compare_metadata(context, Base.metadata) if _table_of(d) in CREDIT_TABLES]


def test_the_migration_matches_the_models_and_downgrades(
    empty_database_url: str | None,
    tmp_path: Path,
    shared_keys_dir: Path,
) -> None:
    settings = make_settings(tmp_path / "data", shared_keys_dir, empty_database_url)
    upgrade_database(settings)
    url = settings.resolved_database_url
    assert set(_inspect(url, lambda c: inspect(c).get_table_names())) >= CREDIT_TABLES
    assert _inspect(url, _credit_differences) == []
    command.downgrade(alembic_config(settings), "0005_billing_core")
    assert not CREDIT_TABLES & set(_inspect(url, lambda c: inspect(c).get_table_names()))
    upgrade_database(settings)
    assert set(_inspect(url, lambda c: inspect(c).get_table_names())) >= CREDIT_TABLES
