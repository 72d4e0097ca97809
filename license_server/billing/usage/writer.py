"""How usage writes reach the database exactly, on each backend. A write is a *job*: a plain synchronous function
over a Core ``Connection`` that locks what it counts, checks, writes, and returns its answer.

- SQLite: jobs go through the same group-commit mechanism as activations (``license_server.db.group_commit``): one
  thread takes every pending job in one ``BEGIN IMMEDIATE`` transaction, each job in its own savepoint (a refusal
  undoes only its own statements), and answers them after the commit. ``BEGIN IMMEDIATE`` holds the database's
  write lock, so no other writer — in this process or another — counts in between.
- PostgreSQL: group commit too: the waiting jobs share one transaction, each in its own savepoint; each job takes a
  row lock (``ON CONFLICT DO UPDATE``, ``SELECT ... FOR UPDATE``) on the counter it checks, held to the batch's
  commit, which serialises writers of that counter across every replica. A unique-key race (two first uses of one
  idempotency key on different counters) is retried once, which then finds the first and answers it; a batch that
  fails as a whole (a deadlock with another replica's batch) is written again one job per transaction.

Nothing is acknowledged before its transaction has committed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from license_server.db.group_commit import SqliteGroupCommitWriter
from license_server.metrics import BILLING_USAGE_WRITES, WRITE_BATCH_SIZE

T = TypeVar("T")
UsageJob = Callable[[Connection], Any]
_SAVEPOINT, _ROLLBACK_TO_SAVEPOINT, _RELEASE_SAVEPOINT = (
    "SAVEPOINT usage_job",
    "ROLLBACK TO SAVEPOINT usage_job",
    "RELEASE SAVEPOINT usage_job",
)


class UsageWriter(Protocol):
    async def run(self, job: Callable[[Connection], T], *, lane: object = None) -> T:
        """Run ``job`` and answer its result once committed. Jobs of different ``lane``s (billing accounts) touch
        different rows, so a writer may write them side by side."""
        ...

    def close(self) -> None: ...


# Labelled once: looking the children up costs three times their increment, on every call.
_SQLITE_WRITTEN = BILLING_USAGE_WRITES.labels("sqlite", "written")
_SQLITE_REFUSED = BILLING_USAGE_WRITES.labels("sqlite", "refused")


class SqliteUsageWriter(SqliteGroupCommitWriter[UsageJob, Any]):
    thread_name = "sqlite-billing"

    def __init__(self, async_url: str, *, write_gate: contextlib.AbstractAsyncContextManager[object]) -> None:
        super().__init__(async_url, write_gate=write_gate)

    async def run(self, job: Callable[[Connection], T], *, lane: object = None) -> T:
        try:
            result: T = await self.submit(job)
        except Exception:
            _SQLITE_REFUSED.inc()
            raise
        _SQLITE_WRITTEN.inc()  # committed: the batch's transaction is done
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
    """Group commit on PostgreSQL: the calls waiting when a batch starts share one transaction, each job in its own
    savepoint (a refusal undoes only its own statements), and all are answered after the one commit. Row locks
    (``ON CONFLICT DO UPDATE``, ``FOR UPDATE``) are held to the batch's commit, so writers of a counter in other
    processes still wait for it: the limits stay exact across replicas. A batch that fails as a whole (its commit,
    a deadlock with another process's batch, a lost connection) is written again one job per transaction, as
    before; a unique-key race is retried once, in its savepoint, and then finds the first write."""

    # At most 64 savepoints that write per transaction: more overflow PostgreSQL's per-backend subtransaction cache,
    # which slows every other session's visibility checks while the transaction is open.
    max_batch = 64
    # Batches of different accounts' jobs run side by side, on connections of their own: they lock different rows.
    lanes = 4

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        # Jobs are Core statements on a connection: an ORM session around each would only add its own bookkeeping.
        engine = session_factory.kw.get("bind")
        if not isinstance(engine, AsyncEngine):
            raise TypeError("the usage writer needs a session factory bound to an engine")
        self._engine = engine
        self._pending: list[list[tuple[UsageJob, asyncio.Future[Any]]]] = [[] for _ in range(self.lanes)]
        self._drainers: list[asyncio.Task[None] | None] = [None] * self.lanes

    async def run(self, job: Callable[[Connection], T], *, lane: object = None) -> T:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        index = hash(lane) % self.lanes
        self._pending[index].append((job, future))
        drainer = self._drainers[index]
        if drainer is None or drainer.done():
            self._drainers[index] = asyncio.ensure_future(self._drain(index))
        try:
            result: T = await future
        except Exception:
            BILLING_USAGE_WRITES.labels("postgresql", "refused").inc()
            raise
        BILLING_USAGE_WRITES.labels("postgresql", "written").inc()  # committed: the batch's transaction is done
        return result

    def _take(self, index: int) -> list[tuple[UsageJob, asyncio.Future[Any]]]:
        pending = self._pending[index]
        batch, self._pending[index] = pending[: self.max_batch], pending[self.max_batch :]
        WRITE_BATCH_SIZE.labels("postgres-billing").observe(len(batch))
        return batch

    async def _drain(self, index: int) -> None:
        # One connection for as long as the lane has work (no checkout and ping per batch); a fresh one after a failure.
        while self._pending[index]:
            try:
                async with self._engine.connect() as connection:
                    while self._pending[index]:
                        batch = self._take(index)
                        jobs = [job for job, _ in batch]
                        try:
                            async with connection.begin():  # committed on success, rolled back on any raise
                                results = await connection.run_sync(_postgres_batch, jobs)
                        except Exception:  # nothing of the batch was written: each job on its own, as one call would be
                            _answer(batch, [await self._alone(job) for job in jobs])
                            break
                        _answer(batch, results)
            except Exception:  # no connection to be had: each waiting job on its own says why
                batch = self._take(index)
                _answer(batch, [await self._alone(job) for job, _ in batch])

    async def _alone(self, job: UsageJob) -> Any:
        for attempt in range(2):
            try:
                async with self._engine.begin() as connection:
                    return await connection.run_sync(job)
            except IntegrityError as exc:
                if attempt:
                    return exc
            except Exception as exc:
                return exc
        raise AssertionError("unreachable")

    def close(self) -> None:
        return None


def _answer(batch: list[tuple[UsageJob, asyncio.Future[Any]]], results: list[Any]) -> None:
    for (_, future), result in zip(batch, results, strict=True):
        if future.done():  # the caller was cancelled; its write is committed all the same
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)


def _postgres_batch(connection: Connection, jobs: list[UsageJob]) -> list[Any]:
    """Each job in a savepoint of its own. Savepoints are not released (the commit ends them all; a release would be
    one more round trip per job): ``ROLLBACK TO`` goes back to the newest of the name, this job's."""
    results: list[Any] = []
    for job in jobs:
        for attempt in range(2):
            connection.exec_driver_sql(_SAVEPOINT)
            try:
                result = job(connection)
            except IntegrityError as race:  # a unique key another transaction took first: once more finds it
                connection.exec_driver_sql(_ROLLBACK_TO_SAVEPOINT)
                if attempt:
                    results.append(race)
                    break
            except DBAPIError:  # deadlock, lost connection, ...: the batch fails as a whole
                raise
            except Exception as refusal:  # a refusal undoes this job's statements only
                connection.exec_driver_sql(_ROLLBACK_TO_SAVEPOINT)
                results.append(refusal)
                break
            else:
                results.append(result)
                break
    return results
