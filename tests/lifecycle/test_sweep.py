"""The lifecycle sweep: set-based SQL that agrees with compute_status, one event per transition, one replica."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime, timedelta

import httpx
from sqlalchemy import select

from license_server.deployments.jobs import flush_check_ins
from license_server.events.leases import acquire_lease
from license_server.events.models import Event, JobLease
from license_server.licenses.models import License
from license_server.lifecycle.jobs import SWEEP_LEASE, full_sweep, run_sweep, sweep
from license_server.lifecycle.status import compute_status, next_transition_at
from license_server.runtime import Runtime
from license_server.scheduler import JobScheduler
from tests.conftest import LicenseFactory, MovableClock
from tests.deployments.conftest import activate, bearer

DAY = timedelta(days=1)


async def events(runtime: Runtime) -> list[str]:
    async with runtime.session_factory() as db:
        return list((await db.scalars(select(Event.type).order_by(Event.id))).all())


async def test_sweep_sql_agrees_with_the_status_function_on_every_rung(
    runtime: Runtime, make_license: LicenseFactory, clock: MovableClock
) -> None:
    now = clock()
    starts = [now - 400 * DAY, now + DAY]
    expires = [now - 10 * DAY, now - DAY, now + 5 * DAY, now + 100 * DAY]
    seen = [None, now - 10 * DAY, now - DAY]
    flags = [(False, False), (True, False), (False, True)]
    ids = []
    for _ in range(len(starts) * len(expires) * len(seen) * len(flags)):
        ids.append((await make_license()).view.license.id)
    async with runtime.session_factory() as db:
        rows = {row.id: row for row in await db.scalars(select(License))}
        combos = itertools.product(starts, expires, seen, flags)
        for license_id, (start, expiry, last_seen, (suspended, revoked)) in zip(ids, combos, strict=True):
            license = rows[license_id]
            license.starts_at, license.expires_at = start, expiry
            license.terms = {"grace_days": 3, "notice_days": 30, "heartbeat_window_days": 7}
            license.first_activated_at = license.last_check_in_at = last_seen
            license.suspended_at = now if suspended else None
            license.revoked_at = now if revoked else None
            license.refresh_schedule(license.effective_terms(None))
            license.status, license.status_reason = "active", "ACTIVE"  # stale on purpose
            # Facts written behind the transition's back: what the product's bulk writers do in that case is to
            # make the license due (transitions.schedule_expression).
            license.next_transition_at = now
        await db.commit()
        await sweep(db, now=now)
        db.expunge_all()
        checked = 0
        for license in await db.scalars(select(License)):
            facts = license.facts(license.effective_terms(None))
            expected = compute_status(facts, now)
            assert (license.status, license.status_reason) == (expected.status.value, expected.reason.value)
            # ... and the SQL form of when it can next change agrees with the pure function on every rung too.
            assert license.next_transition_at == next_transition_at(facts, now)
            checked += 1
    assert checked == len(ids) == 72


async def test_each_transition_emits_one_event_and_a_second_sweep_emits_nothing(
    client: httpx.AsyncClient, runtime: Runtime, make_license: LicenseFactory, clock: MovableClock
) -> None:
    issued = await make_license(expires_at=clock() + 40 * DAY)
    token = (await activate(client, issued)).json()["deployment_token"]
    base = await events(runtime)
    assert base == ["license.activated", "activation.created"]

    clock.advance(8 * DAY)  # no check-in for longer than the 7-day window
    result = await run_sweep(runtime)
    assert result.ran
    assert (result.licenses_changed, result.activations_lost) == (1, 1)
    assert await events(runtime) == [*base, "license.lost", "activation.lost"]
    again = await run_sweep(runtime)
    assert await events(runtime) == [*base, "license.lost", "activation.lost"]
    assert (again.licenses_changed, again.activations_lost, again.events) == (0, 0, 0)

    assert (await client.get("/v1/license", headers=bearer(token))).status_code == 200  # the deployment is back
    assert await flush_check_ins(runtime) == 1
    await run_sweep(runtime)
    assert (await events(runtime))[-1] == "license.recovered"

    clock.advance(20 * DAY)  # inside the 30-day notice window
    await client.get("/v1/license", headers=bearer(token))
    await flush_check_ins(runtime)
    await run_sweep(runtime)
    assert (await events(runtime))[-1] == "license.expiring_soon"

    clock.advance(15 * DAY)
    await client.get("/v1/license", headers=bearer(token))
    await flush_check_ins(runtime)
    await run_sweep(runtime)
    assert (await events(runtime))[-1] == "license.expired"
    final = await events(runtime)
    await run_sweep(runtime)
    assert await events(runtime) == final
    async with runtime.session_factory() as db:
        license = await db.get(License, issued.view.license.id)
        assert license is not None
        assert (license.status, license.previous_status) == ("expired", "expiring")


async def test_only_one_holder_gets_the_lease_until_it_expires(runtime: Runtime, clock: MovableClock) -> None:
    async def take(holder: str) -> bool:
        async with runtime.session_factory() as db:
            return await acquire_lease(db, name="job", holder=holder, ttl=timedelta(seconds=60), now=clock())

    results = await asyncio.gather(*(take(f"replica-{i}") for i in range(6)))
    assert results.count(True) == 1
    winner = f"replica-{results.index(True)}"
    assert await take(winner)  # renewal by the holder
    assert not await take("replica-late")
    clock.advance(timedelta(seconds=61))
    assert await take("replica-late")  # the lease of a silent holder expires
    assert not await take(winner)


def another_process(runtime: Runtime) -> Runtime:
    """A second process on the same database, as a replica started in another container would be: in a container
    host name and pid can both be the same as the first one's."""
    return Runtime(
        settings=runtime.settings,
        signer=runtime.signer,
        engine=runtime.engine,
        session_factory=runtime.session_factory,
        clock=runtime.clock,
    )


async def test_two_processes_with_the_same_host_and_pid_do_not_share_the_sweep_lease(runtime: Runtime) -> None:
    """Holder ids were host:pid, so a second container (also host:1) 'renewed' the first one's lease and both swept."""
    other = another_process(runtime)
    assert other.lease_holder != runtime.lease_holder
    assert (await run_sweep(runtime)).ran
    assert not (await run_sweep(other)).ran
    assert (await run_sweep(runtime)).ran  # the holder renews


async def _sweep_lease(runtime: Runtime) -> JobLease | None:
    async with runtime.session_factory() as db:
        return await db.get(JobLease, SWEEP_LEASE)


async def test_stopping_the_scheduler_hands_the_sweep_lease_to_the_next_process_at_once(
    runtime: Runtime, clock: MovableClock
) -> None:
    """A stopped holder kept its lease for twice the sweep interval: a restarted replica swept nothing until then."""
    jobs = JobScheduler(runtime, shared=True, per_process=False)
    jobs.start()
    try:
        for _ in range(200):
            lease = await _sweep_lease(runtime)
            if lease is not None and lease.holder == runtime.lease_holder:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the scheduler never took the sweep lease")
    finally:
        await jobs.stop()
    successor = another_process(runtime)
    assert (await run_sweep(successor)).ran  # no clock advance: the lease was released, not timed out
    lease = await _sweep_lease(runtime)
    assert lease is not None
    assert lease.holder == successor.lease_holder


async def test_check_ins_are_coalesced_into_one_write_per_activation(
    client: httpx.AsyncClient, runtime: Runtime, make_license: LicenseFactory, clock: MovableClock
) -> None:
    token = (await activate(client, await make_license())).json()["deployment_token"]
    for _ in range(25):
        clock.advance(timedelta(seconds=1))
        await client.get("/v1/license", headers=bearer(token))
    assert len(runtime.poll_state.check_ins) == 1
    assert await flush_check_ins(runtime) == 1
    assert await flush_check_ins(runtime) == 0
    async with runtime.session_factory() as db:
        license = (await db.scalars(select(License))).one()
    assert license.last_check_in_at == clock()


async def _stale_behind_the_writers_back(runtime: Runtime, license_id: object, *, due: datetime | None) -> None:
    async with runtime.session_factory() as db:
        license = await db.get(License, license_id)
        assert license is not None
        license.status, license.status_reason = "lost", "HEARTBEAT_MISSED"  # what its facts do not say
        license.next_transition_at = due
        await db.commit()


async def test_the_sweep_visits_only_licenses_whose_next_transition_has_come(
    runtime: Runtime, make_license: LicenseFactory, clock: MovableClock
) -> None:
    """A license whose stored status is wrong but whose next transition is a day away is not visited (the sweep
    reads the index, not the table); once that instant passes, the sweep moves it. The full reconciliation would
    have moved it at once, which is what makes the difference observable."""
    hidden = (await make_license()).view.license.id
    await _stale_behind_the_writers_back(runtime, hidden, due=clock() + DAY)
    async with runtime.session_factory() as db:
        assert await sweep(db, now=clock()) == (0, 0, 0)
    assert (await _stored(runtime, hidden))[:2] == ("lost", "HEARTBEAT_MISSED")
    clock.advance(DAY)
    async with runtime.session_factory() as db:
        changed, _, _ = await sweep(db, now=clock())
    assert changed == 1
    status, reason, upcoming = await _stored(runtime, hidden)
    assert (status, reason) == ("inactive", "NOT_ACTIVATED")
    assert upcoming is not None
    assert upcoming > clock()  # given its next instant: not visited again until then
    async with runtime.session_factory() as db:
        assert await sweep(db, now=clock()) == (0, 0, 0)
        assert (await full_sweep(db, now=clock()))[0] == 0  # and nothing is left for a full pass to find


async def test_the_sweep_works_in_bounded_batches_until_nothing_is_due(
    runtime: Runtime, make_license: LicenseFactory, clock: MovableClock
) -> None:
    ids = [(await make_license()).view.license.id for _ in range(5)]
    for license_id in ids:
        await _stale_behind_the_writers_back(runtime, license_id, due=clock())
    async with runtime.session_factory() as db:
        changed, _, _ = await sweep(db, now=clock(), batch_size=2)
    assert changed == 5
    for license_id in ids:
        assert (await _stored(runtime, license_id))[:2] == ("inactive", "NOT_ACTIVATED")


async def _stored(runtime: Runtime, license_id: object) -> tuple[str, str, datetime | None]:
    async with runtime.session_factory() as db:
        license = await db.get(License, license_id)
        assert license is not None
        return license.status, license.status_reason, license.next_transition_at
