"""The one status transition: whoever changes a license's facts, its stored status follows and the events of the
change are emitted exactly once; nothing else in the code writes the stored status."""

from __future__ import annotations

import ast
import asyncio
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import select

from license_server.auth.tokens import Actor
from license_server.deployments import service as deployments
from license_server.events.models import Event
from license_server.licenses import service
from license_server.licenses.models import License
from license_server.licenses.terms import LicenseTerms
from license_server.lifecycle.jobs import run_sweep, sweep
from license_server.lifecycle.status import Status
from license_server.lifecycle.transitions import (
    STATUS_COLUMNS,
    TRANSITION_EVENTS,
    events_of_change,
    transition_license,
)
from license_server.runtime import Runtime
from tests.conftest import LicenseFactory, MovableClock
from tests.deployments.conftest import activate

DAY = timedelta(days=1)
PACKAGE = Path(__file__).resolve().parents[2] / "license_server"


async def license_events(runtime: Runtime, license_id: uuid.UUID) -> list[str]:
    async with runtime.session_factory() as db:
        rows = await db.scalars(select(Event.type).where(Event.license_id == license_id).order_by(Event.id))
        return list(rows.all())


async def stored(runtime: Runtime, license_id: uuid.UUID) -> tuple[str, str]:
    async with runtime.session_factory() as db:
        license = await db.get(License, license_id)
        assert license is not None
        return license.status, license.status_reason


# -- the rule ---------------------------------------------------------------------------------------------------
def test_the_rule_names_the_events_of_each_change() -> None:
    expected = {
        (Status.INACTIVE, Status.EXPIRING): ("license.expiring_soon",),
        (Status.ACTIVE, Status.EXPIRING): ("license.expiring_soon",),
        (Status.LOST, Status.ACTIVE): ("license.recovered",),
        (Status.LOST, Status.EXPIRING): ("license.recovered", "license.expiring_soon"),
        (Status.EXPIRING, Status.EXPIRED): ("license.expired",),
        (Status.ACTIVE, Status.LOST): ("license.lost",),
        (Status.INACTIVE, Status.ACTIVE): (),
        (Status.EXPIRING, Status.EXPIRING): (),
        (Status.LOST, Status.INACTIVE): (),
    }
    for (previous, current), events in expected.items():
        assert tuple(e.value for e in events_of_change(previous, current)) == events, (previous, current)
    assert all(previous is not current for previous, current in TRANSITION_EVENTS)


async def test_the_set_based_form_emits_the_rule_for_every_change(
    runtime: Runtime, make_license: LicenseFactory, clock: MovableClock
) -> None:
    """Each stored status against each status the facts now give: the sweep emits exactly the rule's events."""
    now = clock()
    facts = {  # (expires in, last seen ago, suspended) -> the status compute_status gives
        Status.INACTIVE: (100 * DAY, DAY, True),
        Status.ACTIVE: (100 * DAY, DAY, False),
        Status.EXPIRING: (10 * DAY, DAY, False),
        Status.EXPIRED: (-10 * DAY, DAY, False),
        Status.LOST: (100 * DAY, 10 * DAY, False),
    }
    cases: dict[uuid.UUID, tuple[Status, Status]] = {}
    for previous in facts:
        for current in facts:
            cases[(await make_license()).view.license.id] = (previous, current)
    async with runtime.session_factory() as db:
        for license in await db.scalars(select(License)):
            previous, current = cases[license.id]
            expires_in, seen_ago, suspended = facts[current]
            license.expires_at = now + expires_in
            license.first_activated_at = license.last_check_in_at = now - seen_ago
            license.suspended_at = now if suspended else None
            license.refresh_schedule(license.effective_terms(None))
            license.status, license.status_reason = previous.value, "ACTIVE"  # stale on purpose
            license.next_transition_at = now  # and due, as the product's writers leave a stale license
        await db.commit()
        await sweep(db, now=now)
    for license_id, (previous, current) in cases.items():
        assert (await stored(runtime, license_id))[0] == current.value
        expected = [e.value for e in events_of_change(previous, current)]
        assert (await license_events(runtime, license_id)) == expected, (previous, current)


# -- the defects: events lost when an activation or a plan change moved the status -------------------------------
async def test_an_activation_inside_the_notice_window_emits_expiring_soon_once(
    client: httpx.AsyncClient, runtime: Runtime, make_license: LicenseFactory, clock: MovableClock
) -> None:
    issued = await make_license(expires_at=clock() + 20 * DAY)  # notice 30 days: expiring as soon as activated
    license_id = issued.view.license.id
    assert (await activate(client, issued)).status_code == 201
    expected = ["license.activated", "license.expiring_soon", "activation.created"]
    assert await license_events(runtime, license_id) == expected
    assert await stored(runtime, license_id) == ("expiring", "EXPIRES_SOON")
    await run_sweep(runtime)
    assert await license_events(runtime, license_id) == expected  # nothing left for the sweep to emit


async def test_a_lost_license_that_activates_again_emits_recovered_once(
    client: httpx.AsyncClient, runtime: Runtime, make_license: LicenseFactory, clock: MovableClock
) -> None:
    issued = await make_license()
    license_id = issued.view.license.id
    assert (await activate(client, issued)).status_code == 201
    clock.advance(8 * DAY)  # past the 7-day heartbeat window
    await run_sweep(runtime)
    assert await stored(runtime, license_id) == ("lost", "HEARTBEAT_MISSED")
    assert (await activate(client, issued)).status_code == 200  # the same deployment comes back
    events = await license_events(runtime, license_id)
    assert events[-1] == "license.recovered"
    assert await stored(runtime, license_id) == ("active", "ACTIVE")
    await run_sweep(runtime)
    assert await license_events(runtime, license_id) == events
    assert events.count("license.recovered") == 1


async def test_a_plan_notice_change_rederives_stored_status_and_the_status_filter(
    client: httpx.AsyncClient,
    runtime: Runtime,
    actor: Actor,
    make_license: LicenseFactory,
    clock: MovableClock,
    owner_headers: dict[str, str],
) -> None:
    async with runtime.session_factory() as db:
        await service.create_plan(
            db, actor=actor, code="short-notice", name="Short", terms=LicenseTerms(notice_days=10), clock=clock
        )
    on_plan = await make_license(plan_ref="short-notice", expires_at=clock() + 20 * DAY)
    off_plan = await make_license(expires_at=clock() + 40 * DAY)  # default notice 30: stays active
    for issued in (on_plan, off_plan):
        assert (await activate(client, issued, fingerprint=str(uuid.uuid4()))).status_code == 201
    assert await stored(runtime, on_plan.view.license.id) == ("active", "ACTIVE")

    response = await client.patch(
        "/v1/admin/plans/short-notice", headers=owner_headers, json={"terms": {"notice_days": 30}}
    )
    assert response.status_code == 200, response.text
    assert await stored(runtime, on_plan.view.license.id) == ("expiring", "EXPIRES_SOON")
    listed = await client.get("/v1/admin/licenses", headers=owner_headers, params={"status": "expiring"})
    assert [item["id"] for item in listed.json()["items"]] == [str(on_plan.view.license.id)]
    assert (await license_events(runtime, on_plan.view.license.id))[-1] == "license.expiring_soon"
    async with runtime.session_factory() as db:  # the sweep's schedule columns follow the plan too
        license = await db.get(License, on_plan.view.license.id)
        assert license is not None
        assert license.expiring_at == license.expires_at - 30 * DAY
    await run_sweep(runtime)
    assert (await license_events(runtime, on_plan.view.license.id)).count("license.expiring_soon") == 1


async def test_a_plan_change_that_breaks_a_license_s_terms_is_refused_whole(
    client: httpx.AsyncClient,
    runtime: Runtime,
    actor: Actor,
    make_license: LicenseFactory,
    clock: MovableClock,
    owner_headers: dict[str, str],
) -> None:
    """Re-deriving every license on the plan validates each one's combined terms: a change that would leave one
    invalid (the plan enforces SSO sign-in, the license clears the protocol) is a 400 naming it; nothing is written."""
    async with runtime.session_factory() as db:
        await service.create_plan(db, actor=actor, code="sso", name="SSO", clock=clock)
    no_protocol = LicenseTerms.model_validate({"sso": {"signin_protocol": ""}})
    issued = await make_license(plan_ref="sso", terms=no_protocol)
    enforce = {"sso": {"enforced_for_signin": True, "signin_protocol": "oidc"}}
    response = await client.patch("/v1/admin/plans/sso", headers=owner_headers, json={"terms": enforce})
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["field"].startswith(f"licenses.{issued.view.license.id}.terms")
    plan = await client.get("/v1/admin/plans/sso", headers=owner_headers)
    assert "sso" not in plan.json()["terms"]
    assert (await client.get(f"/v1/admin/licenses/{issued.view.license.id}", headers=owner_headers)).status_code == 200


# -- exactly once under a race ------------------------------------------------------------------------------------
async def test_every_event_is_emitted_once_when_the_sweep_and_actions_race(
    runtime: Runtime, actor: Actor, make_license: LicenseFactory, clock: MovableClock
) -> None:
    """Licenses stored `active` whose facts now say `expiring`: the sweep runs concurrently with an admin action on
    half of them and an activation (the SQLite group-commit writer's own connection, or PostgreSQL's row lock) on the
    other half; whichever moves a license's status emits its license.expiring_soon, and the other does not."""
    for _ in range(3):
        licenses: list[tuple[uuid.UUID, str]] = []
        for _ in range(8):
            issued = await make_license(expires_at=clock() + 40 * DAY)
            async with runtime.session_factory() as db:
                license = await db.get(License, issued.view.license.id)
                assert license is not None
                license.first_activated_at = license.last_check_in_at = clock()
                license.refresh_schedule(license.effective_terms(None))
                license.status, license.status_reason = "active", "ACTIVE"  # as an activation left it
                license.next_transition_at = license.expiring_at  # and when it enters the notice window
                await db.commit()
            licenses.append((issued.view.license.id, issued.key))
        clock.advance(15 * DAY)  # into the 30-day notice window
        async with runtime.session_factory() as db:  # keep them checked in, so `expiring` is what the facts say
            for license_id, _ in licenses:
                license = await db.get(License, license_id)
                assert license is not None
                license.last_check_in_at = clock()
                license.refresh_schedule(license.effective_terms(None))
            await db.commit()

        async def act(n: int, license_id: uuid.UUID, key: str) -> None:
            if n % 2:
                await deployments.activate(None, runtime=runtime, license_key=key, fingerprint="fp", clock=clock)
                return
            async with runtime.session_factory() as db:
                await service.update_license(db, actor=actor, license_id=license_id, notes="renewal call", clock=clock)

        await asyncio.gather(*(act(n, *pair) for n, pair in enumerate(licenses)), run_sweep(runtime))
        for license_id, _ in licenses:
            assert await stored(runtime, license_id) == ("expiring", "EXPIRES_SOON")
            assert (await license_events(runtime, license_id)).count("license.expiring_soon") == 1, license_id


async def test_a_transition_from_a_stale_read_does_not_emit_the_change_again(
    runtime: Runtime, make_license: LicenseFactory, clock: MovableClock
) -> None:
    """The guard itself, deterministically: a license read as `active`, then moved to `expiring` by the sweep in
    another transaction; the transition from the stale read writes nothing and emits nothing."""
    license_id = (await make_license(expires_at=clock() + 20 * DAY)).view.license.id
    async with runtime.session_factory() as db:
        license = await db.get(License, license_id)
        assert license is not None
        license.first_activated_at = license.last_check_in_at = clock()
        license.refresh_schedule(license.effective_terms(None))
        license.status, license.status_reason = "active", "ACTIVE"
        license.next_transition_at = clock()  # stale, so due
        await db.commit()
    async with runtime.session_factory() as stale_session:
        stale = await stale_session.get(License, license_id)
        assert stale is not None
        assert stale.status == "active"
        await stale_session.commit()  # end the read: the sweep may write now (SQLite) and we read no snapshot
        async with runtime.session_factory() as sweeping:
            await sweep(sweeping, now=clock())
        change = await transition_license(stale_session, stale, stale.effective_terms(None), clock())
        await stale_session.commit()
    assert change.events == ()
    assert (change.previous.status, change.current.status) == (Status.EXPIRING, Status.EXPIRING)
    assert stale.status == "expiring"
    assert await license_events(runtime, license_id) == ["license.expiring_soon"]


# -- one writer -----------------------------------------------------------------------------------------------------
def _status_writes(tree: ast.AST) -> list[tuple[int, str]]:
    """Statically visible writes of a stored-status column: attribute assignments, ``.values(status=...)``,
    ``set_committed_value``, and — in a module that imports the License model — the columns named in a tuple, list
    or set of strings (a column list for a Core write, as the activation writer's was)."""
    columns = set(STATUS_COLUMNS)
    found: list[tuple[int, str]] = []
    uses_model = any(
        isinstance(node, ast.ImportFrom) and node.module == "license_server.licenses.models" for node in ast.walk(tree)
    )
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Attribute) and leaf.attr in columns and isinstance(leaf.ctx, ast.Store):
                        found.append((node.lineno, f"assigns .{leaf.attr}"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "values":
            found += [(node.lineno, f".values({kw.arg}=...)") for kw in node.keywords if kw.arg in columns]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "set_committed_value":
            found.append((node.lineno, "set_committed_value"))
        elif uses_model and isinstance(node, ast.Tuple | ast.List | ast.Set):
            names = {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
            if names & {"status_reason", "previous_status", "status_changed_at"}:
                found.append((node.lineno, f"names columns {sorted(names & columns)}"))
    return found


def _imports_license(tree: ast.AST) -> bool:
    return any(
        isinstance(node, ast.ImportFrom)
        and node.module == "license_server.licenses.models"
        and any(alias.name == "License" for alias in node.names)
        for node in ast.walk(tree)
    )


def test_nothing_but_the_transition_writes_the_stored_status() -> None:
    allowed = {PACKAGE / "lifecycle" / "transitions.py"}
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in allowed or "migrations" in path.parts:
            continue
        tree = ast.parse(path.read_text())
        # Billing's subscriptions have a status of their own; a billing module that loads the License model is
        # checked like every other.
        if "billing" in path.parts and not _imports_license(tree):
            continue
        offenders += [f"{path.relative_to(PACKAGE)}:{line}: {what}" for line, what in _status_writes(tree)]
    assert offenders == []


def test_the_writer_check_catches_each_form_of_write() -> None:
    """The check above is only as good as what it recognises: each way the old code wrote the status is caught."""
    samples = [
        "license.status, license.status_reason = s, r",  # the model's old refresh()
        "self.status = 'active'",
        "update(License).values(status=new_status)",  # the sweep's old UPDATE
        "from license_server.licenses.models import License\nCOLUMNS = ('updated_at', 'status', 'status_reason')",
        "set_committed_value(license, 'status', 'active')",
    ]
    for sample in samples:
        assert _status_writes(ast.parse(sample)), sample
    harmless = "HealthOut(status='ok'); x = license.status; f(status=1); CLAIMS = ('status', 'status_reason')"
    assert not _status_writes(ast.parse(harmless))
