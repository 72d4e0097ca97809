"""The SQLite database holds personal data, hashes and sealed secrets: its file, WAL and shared memory are 0600."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from license_server.config import DATABASE_FILE_NAME
from license_server.db.migrate import upgrade_database
from license_server.db.session import create_engine
from license_server.edge.store import DB_FILE, create_edge_engine
from tests.conftest import make_settings


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The common default, under which files are created 0644 unless the creator says otherwise."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def modes(database: Path) -> dict[str, int]:
    files = [database, database.with_name(f"{database.name}-wal"), database.with_name(f"{database.name}-shm")]
    return {path.name: stat.S_IMODE(path.stat().st_mode) for path in files if path.exists()}


async def write_something(engine: AsyncEngine, statement: str) -> None:
    async with engine.begin() as connection:
        await connection.execute(text(statement))


def test_a_new_database_and_its_wal_and_shared_memory_are_readable_by_the_owner_only(
    tmp_path: Path, shared_keys_dir: Path
) -> None:
    settings = make_settings(tmp_path / "data", shared_keys_dir, None)
    upgrade_database(settings)
    database = settings.data_dir / DATABASE_FILE_NAME

    async def use() -> dict[str, int]:
        engine = create_engine(settings)
        try:
            await write_something(engine, "CREATE TABLE probe (x INTEGER)")
            return modes(database)  # while the connection is open: the WAL and shared memory exist
        finally:
            await engine.dispose()

    seen = asyncio.run(use())
    assert set(seen) == {DATABASE_FILE_NAME, f"{DATABASE_FILE_NAME}-wal", f"{DATABASE_FILE_NAME}-shm"}
    assert set(seen.values()) == {0o600}, {name: oct(mode) for name, mode in seen.items()}


def test_a_database_an_older_version_left_world_readable_is_tightened(tmp_path: Path, shared_keys_dir: Path) -> None:
    settings = make_settings(tmp_path / "data", shared_keys_dir, None)
    upgrade_database(settings)
    database = settings.data_dir / DATABASE_FILE_NAME
    for path in (database, database.with_name(f"{DATABASE_FILE_NAME}-wal")):
        path.touch()
        os.chmod(path, 0o644)

    engine = create_engine(settings)
    asyncio.run(engine.dispose())

    assert set(modes(database).values()) == {0o600}


def test_the_edge_database_is_readable_by_the_owner_only(tmp_path: Path) -> None:
    async def use() -> dict[str, int]:
        engine = create_edge_engine(tmp_path / "edge")
        try:
            await write_something(engine, "CREATE TABLE probe (x INTEGER)")
            return modes(tmp_path / "edge" / DB_FILE)
        finally:
            await engine.dispose()

    seen = asyncio.run(use())
    assert len(seen) == 3
    assert set(seen.values()) == {0o600}
