"""SQLite's group-commit writer keeps checkpoints off the commit path and the WAL short all the same."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from sqlalchemy import Engine, text

from license_server.db.group_commit import CHECKPOINT_EVERY, SqliteGroupCommitWriter


class _RowWriter(SqliteGroupCommitWriter[int, int]):
    thread_name = "test-writer"

    def write_batch(self, engine: Engine, requests: list[int]) -> list[int | BaseException]:
        written: list[int | BaseException] = []
        with engine.connect() as connection, connection.begin():
            for n in requests:
                connection.execute(text("INSERT INTO t (n, pad) VALUES (:n, :pad)"), {"n": n, "pad": "x" * 3000})
                written.append(n)
        return written


async def test_the_wal_is_started_over_though_commits_never_checkpoint(tmp_path: Path) -> None:
    """Without checkpoints every batch's pages would pile up in the WAL; the writer's own keep it to a few rounds."""
    database = tmp_path / "wal.db"
    with sqlite3.connect(database) as setup:
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE t (n INTEGER, pad TEXT)")
    writer = _RowWriter(f"sqlite+aiosqlite:///{database}", write_gate=asyncio.Lock())
    batches = 10 * CHECKPOINT_EVERY
    try:
        for n in range(batches):  # one at a time: a batch, and a commit, each
            assert await writer.submit(n) == n
    finally:
        writer.close()
    with sqlite3.connect(database) as check:
        assert check.execute("SELECT count(*) FROM t").fetchone() == (batches,)
        _, frames, _ = check.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert frames < batches / 2  # each batch wrote at least one page
