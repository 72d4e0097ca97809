"""Batched usage writes answer exactly what the writes one by one answer.

A batch's plain reserves and commits are written together (PostgreSQL: one call of a migration 0014 function; SQLite:
a few set-based statements); everything else they defer to the write's own job. These tests check that the batch
statements are really used, that what they write is what the job would have written (the commit's usage record holds
the answer given), that a mix of plain, replayed, refused and conflicting writes in one batch comes out exactly, and
that a failing batch statement loses nothing.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from license_server.auth.tokens import Actor
from license_server.billing.accounts import service as accounts
from license_server.billing.accounts.snapshots import AccountSnapshot
from license_server.billing.usage import service
from license_server.billing.usage.models import Reservation, ReservationStatus, UsageCounter, UsageRecord
from license_server.billing.usage.writer import DEFERRED
from license_server.runtime import Runtime
from tests.billing.conftest import Platform, PlatformFactory, subscribe, tiny_plan

KEY = "app_invocation.max_monthly_count"


@pytest.fixture
async def platform(make_platform: PlatformFactory, runtime: Runtime, actor: Actor) -> Platform:
    made = await make_platform(catalogues=(tiny_plan("runs", {KEY: {"kind": "monthly", "limit": 40}}),))
    await subscribe(runtime, actor, made, "org-1", "runs")
    return made


class Spy:
    """Wraps a batch statement's writes (PostgreSQL's and SQLite's): how many calls it was handed, and how many it
    answered itself."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, statement: Any, *, fail: bool = False) -> None:
        self.handed = self.answered = 0
        self.batches: list[list[tuple[Any, Any]]] = []  # each batch's (call, answer) pairs
        write, write_sqlite = statement.write, statement.write_sqlite

        def count(args: Sequence[Any], answers: list[Any]) -> list[Any]:
            self.batches.append(list(zip(args, answers, strict=False)))
            self.handed += len(args)
            if fail:
                raise RuntimeError("the batch statement failed")
            self.answered += sum(answer is not DEFERRED for answer in answers)
            return answers

        async def spied(driver: Any, args: Sequence[Any]) -> list[Any]:
            return count(args, [] if fail else await write(driver, args))

        def spied_sqlite(connection: Any, args: Sequence[Any]) -> list[Any]:
            # A failure after writing: the writer must undo what the statement wrote.
            return count(args, write_sqlite(connection, args))

        monkeypatch.setattr(statement, "write", spied)
        monkeypatch.setattr(statement, "write_sqlite", spied_sqlite)


async def reserve(client: httpx.AsyncClient, platform: Platform, request_id: str, amount: int = 1) -> httpx.Response:
    return await client.post(
        platform.url("org-1", "usage/reserve"),
        headers=platform.headers,
        json={"key": KEY, "amount": amount, "request_id": request_id, "ttl_seconds": 600},
    )


async def commit(client: httpx.AsyncClient, platform: Platform, request_id: str, actual: int) -> httpx.Response:
    return await client.post(
        platform.url("org-1", f"usage/reservations/{request_id}/commit"),
        headers=platform.headers,
        json={"actual": actual},
    )


async def counter(runtime: Runtime) -> tuple[int, int]:
    async with runtime.session_factory() as db:
        row = (await db.execute(select(UsageCounter.used, UsageCounter.held).where(UsageCounter.key == KEY))).one()
        return int(row.used), int(row.held)


async def test_a_commit_records_the_answer_it_gave(
    client: httpx.AsyncClient, platform: Platform, runtime: Runtime
) -> None:
    """On both backends: the usage record of a commit (its history_id) holds exactly the commit's answer, so the
    SQL that writes it on PostgreSQL and the Python that writes it on SQLite (and for deferred commits) agree."""
    assert (await reserve(client, platform, "run-1", 5)).status_code == 201
    answer = await commit(client, platform, "run-1", 3)
    assert answer.status_code == 201, answer.text
    body = answer.json()["data"]
    assert body["committed"] == 3
    assert body["refunded"] == 2
    assert body["status"] == "committed"
    async with runtime.session_factory() as db:
        record = (await db.execute(select(UsageRecord).where(UsageRecord.operation == "commit"))).scalar_one()
    assert str(record.id) == body["history_id"]
    assert record.response == body
    assert (record.key, record.amount, record.idempotency_key) == (KEY, 3, "reservation:run-1")
    assert await counter(runtime) == (3, 0)
    # A replay answers the first commit, from the reservation, with the same body.
    replay = await commit(client, platform, "run-1", 3)
    assert replay.status_code == 201
    assert replay.json()["data"] == body


async def test_plain_reserves_and_commits_are_written_by_the_batch_statements(
    client: httpx.AsyncClient, platform: Platform, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    reserves, commits = Spy(monkeypatch, service._RESERVE_BATCH), Spy(monkeypatch, service._COMMIT_BATCH)
    held = await asyncio.gather(*(reserve(client, platform, f"run-{n}") for n in range(30)))
    assert [r.status_code for r in held] == [201] * 30
    assert reserves.handed == reserves.answered == 30
    assert await counter(runtime) == (0, 30)
    done = await asyncio.gather(*(commit(client, platform, f"run-{n}", n % 2) for n in range(30)))
    assert [r.status_code for r in done] == [201] * 30
    assert commits.handed == commits.answered == 30
    assert await counter(runtime) == (15, 0)
    async with runtime.session_factory() as db:
        statuses = Counter((await db.execute(select(Reservation.status))).scalars())
        records = (await db.execute(select(UsageRecord))).scalars().all()
    assert statuses == {ReservationStatus.COMMITTED.value: 30}
    assert sorted(record.amount for record in records) == [0] * 15 + [1] * 15
    answers = {r.json()["data"]["history_id"]: r.json()["data"] for r in done}
    assert {str(record.id): record.response for record in records} == answers


async def test_a_batch_mixing_plain_replayed_refused_and_conflicting_writes_comes_out_exact(
    client: httpx.AsyncClient, platform: Platform, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    reserves, commits = Spy(monkeypatch, service._RESERVE_BATCH), Spy(monkeypatch, service._COMMIT_BATCH)
    first = [await reserve(client, platform, f"old-{n}") for n in range(10)]
    assert all(r.status_code == 201 for r in first)
    assert (await commit(client, platform, "old-0", 1)).status_code == 201

    # At once: 40 new holds against the 30 left, replays of the first ten, one with another amount, commits of
    # three old holds (one a replay of a commit, one asking for more than it holds), and a commit of nothing.
    calls = [reserve(client, platform, f"new-{n}") for n in range(40)]
    calls += [reserve(client, platform, f"old-{n}") for n in range(1, 10)]
    calls += [reserve(client, platform, "old-0", 2)]
    calls += [commit(client, platform, "old-0", 1), commit(client, platform, "old-1", 1)]
    calls += [commit(client, platform, "old-2", 5), commit(client, platform, "never", 1)]
    answers = await asyncio.gather(*calls)
    new, replays, conflict = answers[:40], answers[40:49], answers[49]
    commit_replay, committed, too_much, unknown = answers[50:]

    assert Counter(r.status_code for r in new) == {201: 30, 403: 10}
    assert {r.json()["code"] for r in new if r.status_code == 403} == {"subscription_limit_reached"}
    for n, replay in enumerate(replays, start=1):
        assert replay.status_code == 201
        assert replay.json()["data"]["reservation_id"] == (first[n].json()["data"]["reservation_id"])
    assert (conflict.status_code, conflict.json()["code"]) == (409, "idempotency_key_reused")
    assert commit_replay.status_code == 201
    assert committed.status_code == 201
    assert too_much.json()["code"] == "commit_exceeds_reservation"
    assert unknown.status_code == 404
    # The batch statements did the plain ones (the new holds that fit, the plain commit) at least once each.
    assert reserves.answered >= 1
    assert commits.answered >= 1

    # 10 old holds - 2 committed + 30 new = 38 held, 2 used: the counter says exactly what the rows say.
    assert await counter(runtime) == (2, 38)
    async with runtime.session_factory() as db:
        rows = (await db.execute(select(Reservation.status, Reservation.amount))).all()
    assert sum(amount for status, amount in rows if status == ReservationStatus.HELD.value) == 38
    assert len(rows) == 40


async def test_two_commits_of_one_hold_in_a_batch_commit_it_once(
    client: httpx.AsyncClient, platform: Platform, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch statement commits a hold named twice at most once (SQLite: by its first call; PostgreSQL's function
    may leave both to their jobs): the second answers the first's commit when it asks for the same actual, and is
    refused when it asks for another."""
    assert (await reserve(client, platform, "same", 3)).status_code == 201
    assert (await reserve(client, platform, "other", 3)).status_code == 201
    commits = Spy(monkeypatch, service._COMMIT_BATCH)
    state = runtime.billing
    snapshot = await _snapshot(runtime, platform)
    # Called straight, the four reach the writer in one turn of the loop (over HTTP their preludes may stagger
    # them into batches of one), so they are one batch.
    answers = await asyncio.gather(
        *(
            service.commit(state, snapshot, request_id=request_id, actual=actual)
            for request_id, actual in (("same", 2), ("same", 2), ("other", 1), ("other", 2))
        ),
        return_exceptions=True,
    )
    assert [sorted(arg.request_id for arg, _ in batch) for batch in commits.batches] == [
        ["other", "other", "same", "same"]
    ]
    [batch] = commits.batches
    written = Counter(arg.request_id for arg, answer in batch if answer is not DEFERRED)
    assert set(written.values()) <= {1}, written  # each hold at most once by the batch; the second call by its job
    if runtime.settings.is_sqlite:  # SQLite's statement commits each hold by its first call
        assert written == {"same": 1, "other": 1}
    assert isinstance(answers[0], dict)
    assert isinstance(answers[1], dict)
    assert answers[0]["history_id"] == answers[1]["history_id"]
    assert (answers[0]["committed"], answers[0]["refunded"]) == (2, 1)
    committed_other = [answer for answer in answers[2:] if isinstance(answer, dict)]
    refused = [answer for answer in answers[2:] if isinstance(answer, Exception)]
    assert len(committed_other) == 1
    assert [getattr(error, "code", None) for error in refused] == ["idempotency_key_reused"]
    used = 2 + committed_other[0]["committed"]
    assert await counter(runtime) == (used, 0)  # each hold committed once, the rest of it freed
    async with runtime.session_factory() as db:
        records = (await db.execute(select(UsageRecord.amount))).all()
    assert sorted(amount for (amount,) in records) == sorted([2, committed_other[0]["committed"]])


async def test_replays_in_a_batch_of_new_reserves_are_left_to_their_jobs_and_the_new_ones_written_by_it(
    client: httpx.AsyncClient, platform: Platform, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's batch first inserts as if every request_id were new; a replay among them makes it start over with a
    lookup per call. Either way the new reserves are the batch's and each replay answers its first reservation."""
    first = [await reserve(client, platform, f"old-{n}") for n in range(4)]
    reserves = Spy(monkeypatch, service._RESERVE_BATCH)
    snapshot = await _snapshot(runtime, platform)
    # replays between the new ones; called straight, all eight reach the writer in one turn of the loop: one batch
    names = [f"old-{n // 2}" if n % 2 == 0 else f"new-{n}" for n in range(8)]
    answers = await asyncio.gather(
        *(
            service.reserve(runtime.billing, snapshot, key=KEY, amount=1, request_id=name, ttl_seconds=600)
            for name in names
        )
    )
    assert [[arg.values["request_id"] for arg, _ in batch] for batch in reserves.batches] == [names]
    for arg, answer in reserves.batches[0]:
        assert (answer is DEFERRED) == arg.values["request_id"].startswith("old")
    replayed = {answer["request_id"]: answer["reservation_id"] for answer in answers[::2]}
    assert replayed == {r.json()["data"]["request_id"]: r.json()["data"]["reservation_id"] for r in first}
    assert await counter(runtime) == (0, 8)  # four old holds and four new, none twice
    async with runtime.session_factory() as db:
        assert len((await db.execute(select(Reservation.id))).all()) == 8


async def _snapshot(runtime: Runtime, platform: Platform) -> AccountSnapshot:
    """The account's snapshot, as the platform API's guard takes it, for calling the service straight."""
    known = await accounts.authenticate_platform(runtime.billing, platform.secret, address="127.0.0.1")
    return await accounts.account_snapshot(runtime.billing, known, "org-1")


async def test_a_failing_batch_statement_loses_nothing(
    client: httpx.AsyncClient, platform: Platform, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the batch statement raises, nothing of it stays written (PostgreSQL: it is one statement; SQLite: it
    fails after writing, and its savepoint is rolled back): its writes go on as jobs, exactly."""
    reserves = Spy(monkeypatch, service._RESERVE_BATCH, fail=True)
    commits = Spy(monkeypatch, service._COMMIT_BATCH, fail=True)
    held = await asyncio.gather(*(reserve(client, platform, f"run-{n}") for n in range(45)))
    assert Counter(r.status_code for r in held) == {201: 40, 403: 5}
    taken = [n for n, r in enumerate(held) if r.status_code == 201]
    done = await asyncio.gather(*(commit(client, platform, f"run-{n}", 1) for n in taken))
    assert all(r.status_code == 201 for r in done), [r.text for r in done]
    assert reserves.handed == 45
    assert reserves.answered == 0
    assert commits.handed == 40
    assert commits.answered == 0
    assert await counter(runtime) == (40, 0)
