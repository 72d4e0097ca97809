"""Engine and session factory for SQLite (WAL) or PostgreSQL (asyncpg)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import event, make_url
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from license_server.config import Settings

# aiosqlite logs every statement with its parameters at DEBUG: secrets and personal data. Never below INFO.
logging.getLogger("aiosqlite").setLevel(logging.INFO)


def configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers proceed during a write; busy_timeout makes writers wait instead of failing at once.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def restrict_sqlite_files(database: Path) -> None:
    """Make the database file, and its WAL and shared-memory files, readable and writable by this user only.

    It holds personal data, hashes and sealed secrets. Created here with 0600 before SQLite opens it (an empty file
    is a new database to SQLite, which gives the -wal and -shm files it creates the database file's mode); files an
    older version left 0644 are tightened.
    """
    if not database.exists():
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT, 0o600))
    for path in (database, database.with_name(f"{database.name}-wal"), database.with_name(f"{database.name}-shm")):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(path, 0o600)


def create_engine(settings: Settings, **engine_options: Any) -> AsyncEngine:
    url = settings.resolved_database_url
    # Statement parameters carry webhook secrets and personal data: never in SQL logs or in exception messages.
    engine_options.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        database = make_url(url).database
        if database and database != ":memory:":
            restrict_sqlite_files(Path(database))
        engine = create_async_engine(url, connect_args={"timeout": 30}, **engine_options)
        event.listen(engine.sync_engine, "connect", configure_sqlite_connection)
        return engine
    # pre_ping replaces connections that died with a database restart; the connect timeout keeps a request waiting
    # for an unreachable database from hanging for asyncpg's default minute.
    engine_options.setdefault("pool_pre_ping", True)
    engine_options.setdefault("connect_args", {"timeout": 5})
    return create_async_engine(url, **engine_options)


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def session_scope(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One session per request; whatever a service did not commit is rolled back."""
    async with factory() as session:
        try:
            yield session
        finally:
            await session.rollback()


def dialect_insert(session: AsyncSession, table: Any) -> Any:
    """INSERT with ON CONFLICT support for the session's database (SQLite and PostgreSQL spell it the same)."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
