"""How usage writes reach the database exactly, on each backend. A write is a *job*: a plain synchronous function
over a Core ``Connection`` that locks what it counts, checks, writes, and returns its answer.

- SQLite: jobs go through the same group-commit mechanism as activations (``license_server.db.group_commit``): one
  thread takes every pending job in one ``BEGIN IMMEDIATE`` transaction, each job in its own savepoint (a refusal
  undoes only its own statements), and answers them after the commit. Batched jobs (below) go first, each kind's
  plain cases written together by a few set-based statements. ``BEGIN IMMEDIATE`` holds the database's
  write lock, so no other writer — in this process or another — counts in between.
- PostgreSQL: group commit too. A job that comes with a *batched form* (``BatchedJob``: plain reserves and
  commits) is written with the batch's others of its kind by one statement (``BatchStatement``, a database function),
  its own transaction: over asyncpg every statement is a round trip, and round trips were most of a write's cost.
  What that statement defers (a replay, a refusal: anything but the common case) and every other job then share one
  transaction, each in its own savepoint; each job takes a row lock (``ON CONFLICT DO UPDATE``, ``SELECT ... FOR
  UPDATE``) on the counter it checks, held to that commit, which serialises writers of that counter across every
  replica (the functions take the same locks, in the same order, to the end of their statement). A unique-key race
  (two first uses of one idempotency key on different counters) is retried once, which then finds the first and
  answers it; a batch that fails as a whole (a deadlock with another replica's batch) is written again one job per
  transaction.

Nothing is acknowledged before its transaction has committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar, cast

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from license_server.db.group_commit import SqliteGroupCommitWriter
from license_server.metrics import BILLING_USAGE_WRITES, WRITE_BATCH_SIZE

logger = logging.getLogger(__name__)
# The counters' children looked up once: a labels() call costs more than the increment.
_SQLITE_WRITTEN, _SQLITE_REFUSED = (
    BILLING_USAGE_WRITES.labels("sqlite", outcome) for outcome in ("written", "refused")
)
_POSTGRESQL_WRITTEN, _POSTGRESQL_REFUSED = (
    BILLING_USAGE_WRITES.labels("postgresql", outcome) for outcome in ("written", "refused")
)
T = TypeVar("T")
UsageJob = Callable[[Connection], Any]
_SAVEPOINT, _ROLLBACK_TO_SAVEPOINT, _RELEASE_SAVEPOINT = (
    "SAVEPOINT usage_job",
    "ROLLBACK TO SAVEPOINT usage_job",
    "RELEASE SAVEPOINT usage_job",
)


# What a batch statement answers for a write it did not do; the write's job then runs.
DEFERRED: Any = object()


class BatchStatement(Protocol):
    """Writes many calls' plain case at once; per call its answer, or ``DEFERRED`` when it wrote nothing of that call
    and the call's job must run (which then sees what the batch wrote)."""

    async def write(self, driver: Any, args: Sequence[Any]) -> list[Any]:
        """PostgreSQL: one statement on ``driver`` (an asyncpg connection outside any transaction, so the statement
        is its own transaction)."""
        ...

    def write_sqlite(self, connection: Connection, args: Sequence[Any]) -> list[Any]:
        """SQLite: a few set-based statements in the writer's transaction, which holds the database's write lock (so
        what they read stays true until the commit)."""
        ...


class BatchedJob:
    """A job (called as itself when written alone or deferred) that the writers first hand to ``statement`` with the
    batch's other writes of the same statement. (A plain class with slots: one is made on every reserve and commit,
    in a seventh of the time a frozen dataclass takes.)"""

    __slots__ = ("args", "job", "statement")

    def __init__(self, statement: BatchStatement, args: Any, job: UsageJob) -> None:
        self.statement = statement
        self.args = args
        self.job = job

    def __call__(self, connection: Connection) -> Any:
        return self.job(connection)


class UsageWriter(Protocol):
    async def run(self, job: Callable[[Connection], T], *, lane: object = None) -> T:
        """Run ``job`` and answer its result once committed. Jobs of different ``lane``s (billing accounts) touch
        different rows, so a writer may write them side by side."""
        ...

    async def aclose(self) -> None:
        """Finish what is in hand and give the database connections back."""
        ...


class SqliteUsageWriter(SqliteGroupCommitWriter[UsageJob, Any]):
    thread_name = "sqlite-billing"
    writes_on_loop = True  # a few indexed statements per call (see license_server.db.group_commit)

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

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def write_batch(self, engine: Engine, requests: list[UsageJob]) -> list[Any]:
        results: list[Any] = [DEFERRED] * len(requests)
        try:
            with engine.connect() as connection, connection.begin():
                # Savepoints straight on the driver's connection: three words of SQL each, where SQLAlchemy's nested
                # transactions cost as much per job as a statement of the job itself. SQLAlchemy never sees them,
                # and each is released or rolled back to before the next job starts.
                driver = connection.connection.driver_connection
                assert driver is not None
                for statement, positions in _batched(requests).values():
                    driver.execute(_SAVEPOINT)
                    try:
                        answers = statement.write_sqlite(
                            connection, [cast(BatchedJob, requests[p]).args for p in positions]
                        )
                    except Exception:  # undone; its calls are written as jobs below
                        logger.warning("a batched usage write failed; its writes go one by one", exc_info=True)
                        driver.execute(_ROLLBACK_TO_SAVEPOINT)
                        driver.execute(_RELEASE_SAVEPOINT)
                        continue
                    driver.execute(_RELEASE_SAVEPOINT)
                    for position, answer in zip(positions, answers, strict=True):
                        results[position] = answer
                for position, job in enumerate(requests):
                    if results[position] is not DEFERRED:
                        continue
                    driver.execute(_SAVEPOINT)
                    try:
                        results[position] = job(connection)
                    except Exception as refusal:  # a refusal (or any failure) undoes this job's statements only
                        driver.execute(_ROLLBACK_TO_SAVEPOINT)
                        driver.execute(_RELEASE_SAVEPOINT)
                        results[position] = refusal
                    else:
                        driver.execute(_RELEASE_SAVEPOINT)
        except Exception:  # the commit failed: nothing was written; each job gets a transaction of its own
            return [_alone(engine, job) for job in requests]
        return results


def _batched(jobs: Sequence[UsageJob]) -> dict[int, tuple[BatchStatement, list[int]]]:
    """The batched jobs' positions, by their statement (in the order the statements first appear)."""
    kinds: dict[int, tuple[BatchStatement, list[int]]] = {}
    for position, job in enumerate(jobs):
        if isinstance(job, BatchedJob):
            kinds.setdefault(id(job.statement), (job.statement, []))[1].append(position)
    return kinds


def _alone(engine: Engine, job: UsageJob) -> Any:
    try:
        with engine.connect() as connection, connection.begin():
            return job(connection)
    except Exception as exc:
        return exc


class PostgresUsageWriter:
    """Group commit on PostgreSQL: of the calls waiting when a batch starts, the batched ones are written by one
    statement per kind (its own transaction); the rest, and what those statements deferred, share one transaction,
    each job in its own savepoint (a refusal undoes only its own statements); all are answered after their commit.
    Row locks (``ON CONFLICT DO UPDATE``, ``FOR UPDATE``) are held to the commit, so writers of a counter in other
    processes still wait for it: the limits stay exact across replicas. A batch that fails as a whole (its commit,
    a deadlock with another process's batch, a lost connection) is written again one job per transaction, as
    before; a unique-key race is retried once, in its savepoint, and then finds the first write."""

    # At most 64 savepoints that write per transaction: more overflow PostgreSQL's per-backend subtransaction cache,
    # which slows every other session's visibility checks while the transaction is open.
    max_batch = 64
    # Batches of different accounts' jobs run side by side, on connections of their own: they lock different rows.
    # Two, not more: a batch is one call whatever its size (most of a call's cost is the round trip), so more lanes
    # mean smaller batches and more calls for the same writes (measured on the two-core machine: 2 lanes cost the
    # server about 170 µs of CPU a reserve, 1 or 4 lanes 200-270 µs); replicas add lanes of their own.
    lanes = 2
    # A lane keeps its connection while calls keep coming, and gives it back to the pool after this long without
    # any: a checkout costs a round trip (the pool's pre-ping), as much as writing a whole batch.
    idle_seconds = 0.5

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        # Jobs are Core statements on a connection: an ORM session around each would only add its own bookkeeping.
        engine = session_factory.kw.get("bind")
        if not isinstance(engine, AsyncEngine):
            raise TypeError("the usage writer needs a session factory bound to an engine")
        self._engine = engine
        self._pending: list[list[tuple[UsageJob, asyncio.Future[Any]]]] = [[] for _ in range(self.lanes)]
        self._drainers: list[asyncio.Task[None] | None] = [None] * self.lanes
        self._idle: list[asyncio.Future[None] | None] = [None] * self.lanes  # a lane waiting for work wakes on this
        self._closing = False

    async def run(self, job: Callable[[Connection], T], *, lane: object = None) -> T:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        index = hash(lane) % self.lanes
        self._pending[index].append((job, future))
        idle = self._idle[index]
        if idle is not None and not idle.done():
            idle.set_result(None)
        drainer = self._drainers[index]
        if drainer is None or drainer.done():
            self._drainers[index] = asyncio.ensure_future(self._drain(index))
        try:
            result: T = await future
        except Exception:
            _POSTGRESQL_REFUSED.inc()
            raise
        _POSTGRESQL_WRITTEN.inc()  # committed: the batch's transaction is done
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
                    while await self._more_work(index):
                        batch = self._take(index)
                        results, failed = await self._write(connection, [job for job, _ in batch])
                        _answer(batch, results)
                        if failed:
                            break
            except Exception:  # no connection to be had: each waiting job on its own says why
                batch = self._take(index)
                _answer(batch, [await self._alone(job) for job, _ in batch])

    async def _more_work(self, index: int) -> bool:
        """Whether the lane has work, waiting up to ``idle_seconds`` for some."""
        if self._pending[index] or self._closing:
            return bool(self._pending[index])
        idle = self._idle[index] = asyncio.get_running_loop().create_future()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(idle, self.idle_seconds)
        self._idle[index] = None
        return bool(self._pending[index])

    async def _write(self, connection: AsyncConnection, jobs: list[UsageJob]) -> tuple[list[Any], bool]:
        """Every job's result (or what it raised), and whether a transaction failed on the way (the connection may
        be broken). Batched jobs go first, one statement per kind, each its own transaction (a single round trip);
        then every other job and every deferred one share one transaction, each in its own savepoint. (The jobs of
        one batch were all waiting at once: any order is one they could have arrived in.)"""
        results: list[Any] = [DEFERRED] * len(jobs)
        kinds = _batched(jobs)
        if kinds:
            driver = (await connection.get_raw_connection()).driver_connection  # outside any transaction: autocommit
            for statement, positions in kinds.values():
                try:
                    answers = await statement.write(driver, [cast(BatchedJob, jobs[p]).args for p in positions])
                except Exception:  # one statement: nothing of it was written, so its jobs are written as jobs below
                    logger.warning("a batched usage write failed; its writes go one by one", exc_info=True)
                    continue
                for position, answer in zip(positions, answers, strict=True):
                    results[position] = answer
        rest = [position for position, result in enumerate(results) if result is DEFERRED]
        if not rest:
            return results, False
        failed = False
        try:
            async with connection.begin():  # committed on success, rolled back on any raise
                answers = await connection.run_sync(_postgres_batch, [jobs[p] for p in rest])
        except Exception:  # nothing of these was written: each job on its own, as one call would be
            answers = [await self._alone(jobs[p]) for p in rest]
            failed = True
        for position, answer in zip(rest, answers, strict=True):
            results[position] = answer
        return results, failed

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

    async def aclose(self) -> None:
        self._closing = True
        for idle in self._idle:
            if idle is not None and not idle.done():
                idle.set_result(None)
        await asyncio.gather(*(drainer for drainer in self._drainers if drainer is not None), return_exceptions=True)


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
    return [_in_savepoint(connection, job) for job in jobs]


def _in_savepoint(connection: Connection, job: UsageJob) -> Any:
    """The job's result, or what it raised (a refusal undoes only its own statements); a database error raises."""
    for attempt in range(2):
        connection.exec_driver_sql(_SAVEPOINT)
        try:
            return job(connection)
        except IntegrityError as race:  # a unique key another transaction took first: once more finds it
            connection.exec_driver_sql(_ROLLBACK_TO_SAVEPOINT)
            if attempt:
                return race
        except DBAPIError:  # deadlock, lost connection, ...: the batch fails as a whole
            raise
        except Exception as refusal:  # a refusal undoes this job's statements only
            connection.exec_driver_sql(_ROLLBACK_TO_SAVEPOINT)
            return refusal
    raise AssertionError("unreachable")
