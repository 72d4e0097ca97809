"""SQLite's group-commit writer keeps checkpoints off the commit path and the WAL short all the same; a writer of
quick batches writes them on the event loop, and never makes the loop wait for another process's write lock."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from license_server.db.group_commit import CHECKPOINT_EVERY, SqliteGroupCommitWriter


class _RowWriter(SqliteGroupCommitWriter[int, int]):
    thread_name = "test-writer"

    def __init__(self, async_url: str, *, on_loop: bool = False) -> None:
        super().__init__(async_url, write_gate=asyncio.Lock())
        self.writes_on_loop = on_loop
        self.threads: list[str] = []  # where each batch was written

    def write_batch(self, engine: Engine, requests: list[int]) -> list[int | BaseException]:
        written: list[int | BaseException] = []
        self.threads.append(threading.current_thread().name)
        with engine.connect() as connection, connection.begin():
            for n in requests:
                connection.execute(text("INSERT INTO t (n, pad) VALUES (:n, :pad)"), {"n": n, "pad": "x" * 3000})
                written.append(n)
        return written


def _database(tmp_path: Path) -> Path:
    database = tmp_path / "wal.db"
    with sqlite3.connect(database) as setup:
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE t (n INTEGER, pad TEXT)")
    return database


@pytest.mark.parametrize("on_loop", [False, True], ids=["in-thread", "on-loop"])
async def test_the_wal_is_started_over_though_commits_never_checkpoint(tmp_path: Path, on_loop: bool) -> None:
    """Without checkpoints every batch's pages would pile up in the WAL; the writer's own keep it to a few rounds."""
    database = _database(tmp_path)
    writer = _RowWriter(f"sqlite+aiosqlite:///{database}", on_loop=on_loop)
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
    if on_loop:  # only the batch after each background checkpoint went to the thread, for its catch-up checkpoint
        in_thread = sum(name != threading.current_thread().name for name in writer.threads)
        assert 0 < in_thread <= batches // CHECKPOINT_EVERY


async def test_a_quick_writer_writes_on_the_loop_and_a_held_write_lock_sends_its_batch_to_the_thread(
    tmp_path: Path,
) -> None:
    """Another process holding the write lock: the batch waits for it in the writer thread while the loop serves on,
    and is written once the lock is free; the next batch is written on the loop again."""
    database = _database(tmp_path)
    writer = _RowWriter(f"sqlite+aiosqlite:///{database}", on_loop=True)
    loop_thread = threading.current_thread().name
    other = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    try:
        assert await writer.submit(1) == 1
        assert writer.threads == [loop_thread]
        other.execute("BEGIN IMMEDIATE")  # another process's write transaction
        other.execute("INSERT INTO t (n, pad) VALUES (0, 'other')")
        release = threading.Timer(0.5, other.execute, ("COMMIT",))  # the other process commits half a second on
        release.start()
        write = asyncio.ensure_future(writer.submit(2))
        loop = asyncio.get_running_loop()
        longest_gap, last = 0.0, loop.time()
        while not write.done():  # the loop keeps turning while the batch waits for the lock
            await asyncio.sleep(0.01)
            longest_gap, last = max(longest_gap, loop.time() - last), loop.time()
        release.join()
        assert await write == 2
        assert longest_gap < 0.25  # never blocked for the half second the lock was held
        assert writer.threads[1] == loop_thread  # tried on the loop first: found the lock held
        assert writer.threads[2] != loop_thread  # then written in the writer thread, which waited
        assert await writer.submit(3) == 3
        assert writer.threads[3] == loop_thread
    finally:
        other.close()
        writer.close()
    with sqlite3.connect(database) as check:
        assert check.execute("SELECT n FROM t ORDER BY n").fetchall() == [(0,), (1,), (2,), (3,)]
