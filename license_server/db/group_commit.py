"""Group commit for SQLite: writes queue here and one thread runs each batch in one ``BEGIN IMMEDIATE`` transaction.

SQLite takes one writer at a time. Through aiosqlite every statement is a hop between the event loop and the
driver's thread; here a whole batch costs one hop and one commit. Each batch holds the runtime's write gate, so it
queues behind the other writers of this process instead of spinning in SQLite's busy handler, and every request is
answered only after its batch has committed: a crash loses only unanswered requests.

Subclasses say how a batch is written (``write_batch``); activations and billing usage writes both use this.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event

from license_server.db.session import configure_sqlite_connection
from license_server.metrics import WRITE_BATCH_SIZE

RequestT = TypeVar("RequestT")
ResultT = TypeVar("ResultT")
MAX_BATCH = 256


def sync_sqlite_url(async_url: str) -> str:
    return async_url.replace("sqlite+aiosqlite:", "sqlite+pysqlite:", 1)


@dataclass
class _Pending(Generic[RequestT, ResultT]):
    request: RequestT
    future: asyncio.Future[ResultT]


class SqliteGroupCommitWriter(Generic[RequestT, ResultT]):
    thread_name = "sqlite-writer"
    max_batch = MAX_BATCH

    def __init__(self, async_url: str, *, write_gate: contextlib.AbstractAsyncContextManager[object]) -> None:
        self._url = sync_sqlite_url(async_url)
        self._write_gate = write_gate
        self._engine: Engine | None = None
        self._executor: ThreadPoolExecutor | None = None
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
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.thread_name)
        return self._engine, self._executor

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
                    results = await loop.run_in_executor(executor, self.write_batch, engine, requests)
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
        if self._engine is not None:
            self._engine.dispose()
        self._engine = self._executor = None


def _autocommit_driver(dbapi_connection: Any, record: Any) -> None:
    configure_sqlite_connection(dbapi_connection, record)
    dbapi_connection.isolation_level = None  # transactions are begun explicitly (BEGIN IMMEDIATE) below


def _begin_immediate(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")
