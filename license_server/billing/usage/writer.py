"""How usage writes reach the database exactly, on each backend. A write is a *job*: a plain synchronous function
over a Core ``Connection`` that locks what it counts, checks, writes, and returns its answer.

- SQLite: jobs go through the same group-commit mechanism as activations (``license_server.db.group_commit``): one
  thread takes every pending job in one ``BEGIN IMMEDIATE`` transaction, each job in its own savepoint (a refusal
  undoes only its own statements), and answers them after the commit. ``BEGIN IMMEDIATE`` holds the database's
  write lock, so no other writer — in this process or another — counts in between.
- PostgreSQL: each job runs in its own transaction; it takes a row lock (``SELECT ... FOR UPDATE``) on the counter
  it checks, which serialises writers of that counter across every replica. A unique-key race (two first uses of
  one idempotency key on different counters) is retried once, which then finds the first and answers it.

Nothing is acknowledged before its transaction has committed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from license_server.db.group_commit import SqliteGroupCommitWriter
from license_server.metrics import BILLING_USAGE_WRITES

T = TypeVar("T")
UsageJob = Callable[[Connection], Any]


class UsageWriter(Protocol):
    async def run(self, job: Callable[[Connection], T]) -> T: ...

    def close(self) -> None: ...


class SqliteUsageWriter(SqliteGroupCommitWriter[UsageJob, Any]):
    thread_name = "sqlite-billing"

    def __init__(self, async_url: str, *, write_gate: contextlib.AbstractAsyncContextManager[object]) -> None:
        super().__init__(async_url, write_gate=write_gate)

    async def run(self, job: Callable[[Connection], T]) -> T:
        try:
            result: T = await self.submit(job)
        except Exception:
            BILLING_USAGE_WRITES.labels("sqlite", "refused").inc()
            raise
        BILLING_USAGE_WRITES.labels("sqlite", "written").inc()  # committed: the batch's transaction is done
        return result

    def write_batch(self, engine: Engine, requests: list[UsageJob]) -> list[Any]:
        results: list[Any] = []
        try:
            with engine.connect() as connection, connection.begin():
                for job in requests:
                    savepoint = connection.begin_nested()
                    try:
                        results.append(job(connection))
                    except Exception as refusal:  # a refusal (or any failure) undoes this job's statements only
                        savepoint.rollback()
                        results.append(refusal)
                    else:
                        savepoint.commit()
        except Exception:  # the commit failed: nothing was written; each job gets a transaction of its own
            return [_alone(engine, job) for job in requests]
        return results


def _alone(engine: Engine, job: UsageJob) -> Any:
    try:
        with engine.connect() as connection, connection.begin():
            return job(connection)
    except Exception as exc:
        return exc


class PostgresUsageWriter:
    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._session_factory = session_factory

    async def run(self, job: Callable[[Connection], T]) -> T:
        for attempt in range(2):
            async with self._session_factory() as session:
                try:
                    result: T = await session.run_sync(lambda sync_session: job(sync_session.connection()))
                    await session.commit()
                except IntegrityError:
                    await session.rollback()
                    if attempt:
                        BILLING_USAGE_WRITES.labels("postgresql", "refused").inc()
                        raise
                except Exception:
                    BILLING_USAGE_WRITES.labels("postgresql", "refused").inc()
                    raise
                else:
                    BILLING_USAGE_WRITES.labels("postgresql", "written").inc()
                    return result
        raise AssertionError("unreachable")

    def close(self) -> None:
        return None
