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
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from license_server.db.group_commit import SqliteGroupCommitWriter
from license_server.metrics import BILLING_USAGE_WRITES

T = TypeVar("T")
UsageJob = Callable[[Connection], Any]
_SAVEPOINT, _ROLLBACK_TO_SAVEPOINT, _RELEASE_SAVEPOINT = (
    "SAVEPOINT usage_job",
    "ROLLBACK TO SAVEPOINT usage_job",
    "RELEASE SAVEPOINT usage_job",
)


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
                # Savepoints straight on the driver's connection: three words of SQL each, where SQLAlchemy's nested
                # transactions cost as much per job as a statement of the job itself. SQLAlchemy never sees them,
                # and each is released or rolled back to before the next job starts.
                driver = connection.connection.driver_connection
                assert driver is not None
                for job in requests:
                    driver.execute(_SAVEPOINT)
                    try:
                        results.append(job(connection))
                    except Exception as refusal:  # a refusal (or any failure) undoes this job's statements only
                        driver.execute(_ROLLBACK_TO_SAVEPOINT)
                        driver.execute(_RELEASE_SAVEPOINT)
                        results.append(refusal)
                    else:
                        driver.execute(_RELEASE_SAVEPOINT)
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
        # Jobs are Core statements on a connection: an ORM session around each would only add its own bookkeeping.
        engine = session_factory.kw.get("bind")
        if not isinstance(engine, AsyncEngine):
            raise TypeError("the usage writer needs a session factory bound to an engine")
        self._engine = engine

    async def run(self, job: Callable[[Connection], T]) -> T:
        for attempt in range(2):
            try:
                async with self._engine.begin() as connection:  # committed on success, rolled back on any raise
                    result: T = await connection.run_sync(job)
            except IntegrityError:
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
