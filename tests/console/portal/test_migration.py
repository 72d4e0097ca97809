"""Migration 0008_portal: it creates exactly the tables the portal's models describe, and downgrades cleanly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect

from license_server.all_models import Base
from license_server.db.migrate import alembic_config, upgrade_database
from tests.billing.credits.test_migration import _inspect, _table_of
from tests.conftest import make_settings
from tests.db.test_migrations import empty_database_url

__all__ = ["empty_database_url"]
PORTAL_TABLES = {"portal_links", "portal_sessions"}


def _portal_differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return [d for d in compare_metadata(context, Base.metadata) if _table_of(d) in PORTAL_TABLES]


def _tables(url: str) -> set[str]:
    return set(_inspect(url, lambda c: inspect(c).get_table_names()))


def test_the_migration_matches_the_models_and_downgrades(
    empty_database_url: str | None, tmp_path: Path, shared_keys_dir: Path
) -> None:
    settings = make_settings(tmp_path / "data", shared_keys_dir, empty_database_url)
    upgrade_database(settings)
    url = settings.resolved_database_url
    assert _tables(url) >= PORTAL_TABLES
    assert _inspect(url, _portal_differences) == []
    config = alembic_config(settings)
    before = ScriptDirectory.from_config(config).get_revision("0008_portal").down_revision  # wherever it is chained
    command.downgrade(config, str(before))
    assert not PORTAL_TABLES & _tables(url)
    upgrade_database(settings)
    assert _tables(url) >= PORTAL_TABLES
