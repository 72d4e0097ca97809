"""Migration 0010_subscriptions: the lifecycle's columns and tables are exactly what the models describe, and it
downgrades cleanly (and upgrades again)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect

from license_server.all_models import Base
from license_server.db.migrate import alembic_config, upgrade_database
from tests.billing.credits.test_migration import _inspect, _table_of
from tests.conftest import make_settings
from tests.db.test_migrations import empty_database_url

__all__ = ["empty_database_url"]
NEW_TABLES = {"billing_subscription_plan_changes", "billing_test_clocks", "billing_test_clock_accounts"}
CHECKED = NEW_TABLES | {"billing_subscriptions"}


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return [d for d in compare_metadata(context, Base.metadata) if _table_of(d) in CHECKED]


def _columns(connection: Connection) -> set[str]:
    return {column["name"] for column in inspect(connection).get_columns("billing_subscriptions")}


def test_the_migration_matches_the_models_and_downgrades(
    empty_database_url: str | None, tmp_path: Path, shared_keys_dir: Path
) -> None:
    settings = make_settings(tmp_path / "data", shared_keys_dir, empty_database_url)
    upgrade_database(settings)
    url = settings.resolved_database_url
    assert set(_inspect(url, lambda c: inspect(c).get_table_names())) >= NEW_TABLES
    assert _inspect(url, _differences) == []
    command.downgrade(alembic_config(settings), "0009_invoices")  # the revision before this one
    assert not NEW_TABLES & set(_inspect(url, lambda c: inspect(c).get_table_names()))
    assert "pending_plan_id" not in _inspect(url, _columns)
    upgrade_database(settings)
    assert {"pending_plan_id", "cancel_at", "current_period_end"} <= _inspect(url, _columns)
