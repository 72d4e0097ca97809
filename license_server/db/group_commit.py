"""Group commit for SQLite: writes queue here and one thread runs each batch in one ``BEGIN IMMEDIATE`` transaction.

SQLite takes one writer at a time. Through aiosqlite every statement is a hop between the event loop and the
driver's thread; here a whole batch costs one hop and one commit. Each batch holds the runtime's write gate, so it
queues behind the other writers of this process instead of spinning in SQLite's busy handler, and every request is
answered only after its batch has committed: a crash loses only unanswered requests.

Checkpoints (copying the WAL back into the database file, an fsync on each side) are kept off the batches' path.
SQLite runs one inside the commit that takes the WAL past 1,000 pages, and that batch's requests, and every batch
queued behind it, waited for both fsyncs: under load, a tenth of the writer's time went to commits of over 2 ms. Here
the writer's connections never checkpoint on their own: every ``CHECKPOINT_EVERY`` batches a second thread
checkpoints what the WAL holds (PASSIVE, so it never holds the writer up), and when it is done the writer
checkpoints, between two batches, the few pages written meanwhile, so that the whole WAL is copied and SQLite starts
it over, as after its own checkpoints. Durability is unchanged: with ``synchronous=NORMAL`` a checkpoint syncs the
WAL before it copies, wherever it runs.

Where a batch is only quick statements (``writes_on_loop``: billing's usage writes), it runs on the event loop
itself rather than in the thread. Each SQLite call releases the GIL and takes it back, and with the loop and the
writer thread both busy every one of those was a hand-over between them: over HTTP a reserve cost about a third
more CPU written in the thread than on the loop. The loop must never wait for a lock, though: its connection has no
busy timeout, and its ``BEGIN IMMEDIATE`` either takes the database's write lock at once or finds another process
holding it, and then that batch, having written nothing, goes to the thread, which waits as before. Once the write
lock is held, nothing in a WAL transaction waits for another connection. The batch that follows a background
checkpoint (whose own checkpoint syncs files) also goes to the thread.

Subclasses say how a batch is written (``write_batch``); activations and billing usage writes both use this.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import OperationalError

from license_server.db.session import configure_sqlite_connection
from license_server.metrics import WRITE_BATCH_SIZE

RequestT = TypeVar("RequestT")
ResultT = TypeVar("ResultT")
MAX_BATCH = 256
# About SQLite's own threshold (1,000 WAL pages) for billing's batches of reserves, the busiest writer.
CHECKPOINT_EVERY = 32


def sync_sqlite_url(async_url: str) -> str:
    return async_url.replace("sqlite+aiosqlite:", "sqlite+pysqlite:", 1)


@dataclass
class _Pending(Generic[RequestT, ResultT]):
    request: RequestT
    future: asyncio.Future[ResultT]


class WriteLockBusy(BaseException):
    """The database's write lock was held by another connection when the loop's batch began: nothing was written.

    A BaseException, so that a ``write_batch``'s fallback for failures inside its transaction (``except Exception``)
    lets it through to the writer, which writes the batch again in the thread."""


class SqliteGroupCommitWriter(Generic[RequestT, ResultT]):
    thread_name = "sqlite-writer"
    max_batch = MAX_BATCH
    # Whether a batch may run on the event loop when the write lock is free (see the module's docstring): only for
    # batches of a few quick statements per request, never ones that hash secrets or otherwise compute at length.
    writes_on_loop = False

    def __init__(self, async_url: str, *, write_gate: contextlib.AbstractAsyncContextManager[object]) -> None:
        self._url = sync_sqlite_url(async_url)
        self._write_gate = write_gate
        self._engine: Engine | None = None
        self._loop_engine: Engine | None = None  # the loop's connection: no busy timeout
        self._executor: ThreadPoolExecutor | None = None
        self._checkpointer: ThreadPoolExecutor | None = None
        # Read and set by whichever thread runs a batch (the loop's or the writer's, never both at once).
        self._checkpoint: Future[None] | None = None  # the background checkpoint, running or done
        self._batches_since_checkpoint = 0
        self._pending: list[_Pending[RequestT, ResultT]] = []
        self._drainer: asyncio.Task[None] | None = None

    def write_batch(self, engine: Engine, requests: list[RequestT]) -> list[ResultT | BaseException]:
        """Write every request (in the writer thread); one result or exception per request, in order."""
        raise NotImplementedError

    def _ensure_started(self) -> tuple[Engine, ThreadPoolExecutor]:
        if self._engine is None or self._executor is None:
            engine = create_engine(self._url, connect_args={"timeout": 30, "check_same_thread": False})
            event.listen(engine, "connect", _autocommit_driver)
            event.listen(engine, "begin", _begin_immediate)
            self._engine = engine
            if self.writes_on_loop:
                loop_engine = create_engine(self._url, connect_args={"timeout": 0, "check_same_thread": False})
                event.listen(loop_engine, "connect", _autocommit_driver_without_waiting)
                event.listen(loop_engine, "begin", _begin_immediate_or_busy)
                self._loop_engine = loop_engine
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.thread_name)
            self._checkpointer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.thread_name}-checkpoint")
        return self._engine, self._executor

    def _write(self, engine: Engine, requests: list[RequestT]) -> list[ResultT | BaseException]:
        """``write_batch``, with the checkpoints that keep the WAL short (in the writer thread)."""
        if self._checkpoint is not None and self._checkpoint.done():
            self._checkpoint = None
            _checkpoint(engine)  # what was written while the background one ran: then the WAL starts over
        results = self.write_batch(engine, requests)
        self._count_batch()
        return results

    def _write_on_loop(self, requests: list[RequestT]) -> list[ResultT | BaseException] | None:
        """The batch written on the event loop, or None when it must go to the thread (nothing written)."""
        if self._loop_engine is None or (self._checkpoint is not None and self._checkpoint.done()):
            return None  # the catch-up checkpoint, which syncs files, runs in the thread before its batch
        try:
            results = self.write_batch(self._loop_engine, requests)
        except WriteLockBusy:
            return None
        self._count_batch()
        return results

    def _count_batch(self) -> None:
        self._batches_since_checkpoint += 1
        if self._batches_since_checkpoint >= CHECKPOINT_EVERY and self._checkpoint is None and self._checkpointer:
            assert self._engine is not None
            self._batches_since_checkpoint = 0
            self._checkpoint = self._checkpointer.submit(_checkpoint, self._engine)

    async def submit(self, request: RequestT) -> ResultT:
        future: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(request, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            WRITE_BATCH_SIZE.labels(self.thread_name).observe(len(batch))
            try:
                engine, executor = self._ensure_started()
                requests = [pending.request for pending in batch]
                async with self._write_gate:
                    written = self._write_on_loop(requests)
                    results = (
                        written
                        if written is not None
                        else await loop.run_in_executor(executor, self._write, engine, requests)
                    )
            except BaseException as exc:  # the commit itself failed: nothing of this batch was acknowledged
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for pending, result in zip(batch, results, strict=True):
                if pending.future.done():  # the caller was cancelled; its write is committed all the same
                    continue
                if isinstance(result, BaseException):
                    pending.future.set_exception(result)
                else:
                    pending.future.set_result(result)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        if self._checkpointer is not None:
            self._checkpointer.shutdown(wait=True)
        for engine in (self._engine, self._loop_engine):
            if engine is not None:
                engine.dispose()
        self._engine = self._loop_engine = self._executor = self._checkpointer = None
        self._checkpoint, self._batches_since_checkpoint = None, 0


def _autocommit_driver(dbapi_connection: Any, record: Any) -> None:
    configure_sqlite_connection(dbapi_connection, record)
    dbapi_connection.isolation_level = None  # transactions are begun explicitly (BEGIN IMMEDIATE) below
    dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")  # the writer checkpoints off the commit path (above)


def _autocommit_driver_without_waiting(dbapi_connection: Any, record: Any) -> None:
    _autocommit_driver(dbapi_connection, record)
    dbapi_connection.execute("PRAGMA busy_timeout=0")  # after configure_sqlite_connection's 30 s: the loop never waits


def _checkpoint(engine: Engine) -> None:
    """Copy what the WAL holds into the database file, as far as readers allow, without waiting for any lock."""
    connection = engine.raw_connection()
    try:
        driver = connection.driver_connection
        assert driver is not None
        with contextlib.suppress(sqlite3.Error):  # another process checkpointing: the next round does it
            driver.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    finally:
        connection.close()


def _begin_immediate(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _begin_immediate_or_busy(connection: Connection) -> None:
    try:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    except OperationalError as exc:
        # the primary result code: SQLITE_BUSY's extended codes (recovery, snapshot, timeout) all mean busy
        code = getattr(exc.orig, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            raise WriteLockBusy from exc
        raise
