"""Alembic is the only way the schema is created. Called synchronously, before any event loop runs.

Replicas started together all call ``upgrade_database``; migrations are serialised (a PostgreSQL advisory lock taken
in the migration transaction, see ``migrations/env.py``; a file lock beside a SQLite database), so one upgrades and
the others then find nothing to do. A process that finds the schema already current starts without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, make_url

from license_server.config import Settings
from license_server.db.session import create_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# The key of the PostgreSQL advisory lock every upgrading process takes: any fixed number no other code uses.
MIGRATION_LOCK_ID = 0x4C53_4D49_4752  # "LSMIGR"


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["settings"] = settings
    return config


def upgrade_database(settings: Settings, revision: str = "head") -> None:
    if settings.is_sqlite:
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    config = alembic_config(settings)
    if revision == "head" and schema_is_current(settings, config):
        return
    with _sqlite_migration_lock(settings):
        command.upgrade(config, revision)


def schema_is_current(settings: Settings, config: Config) -> bool:
    """True when the database is at every head revision (read without taking the migration lock)."""
    heads = set(ScriptDirectory.from_config(config).get_heads())
    return asyncio.run(_current_revisions(settings)) == heads


async def _current_revisions(settings: Settings) -> set[str]:
    def read(connection: Connection) -> set[str]:
        return set(MigrationContext.configure(connection).get_current_heads())

    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(read)
    finally:
        await engine.dispose()


@contextlib.contextmanager
def _sqlite_migration_lock(settings: Settings) -> Iterator[None]:
    """SQLite runs DDL outside a transaction, so concurrent upgrades of one file need a lock of their own."""
    database = make_url(settings.resolved_database_url).database if settings.is_sqlite else None
    if not database or database == ":memory:":
        yield
        return
    fd = os.open(f"{database}.migration-lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
