"""The vendor store and the inner-API services on both databases: hashing, coalesced check-ins, first use,
idempotent writes under concurrency, SSO change times, and the cache-first /info path."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.models import AuditEvent
from license_server.auth.tokens import Actor
from license_server.deployments.jobs import flush_check_ins
from license_server.errors import ValidationFailed
from license_server.events.models import Event
from license_server.inner_api import service
from license_server.inner_api.mapping import AccessMode
from license_server.inner_api.models import (
    AppAllowedUser,
    DefaultWorkspaceMember,
    InnerApiCredential,
    WorkspacePolicyOverride,
)
from license_server.inner_api.store import SqlInnerApiStore, VendorInnerApiRecords, get_settings
from license_server.licenses import service as licenses
from license_server.licenses.models import License
from license_server.licenses.terms import LicenseTerms
from license_server.runtime import Runtime
from tests.conftest import LicenseFactory, MovableClock


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _records(
    runtime: Runtime, db: AsyncSession, license_id: uuid.UUID, actor: Actor | None = None
) -> VendorInnerApiRecords:
    return VendorInnerApiRecords(db, license_id=license_id, hasher=runtime.hasher, actor=actor, clock=runtime.clock)


async def _credential(
    runtime: Runtime, actor: Actor, license_id: uuid.UUID
) -> service.CreatedCredential[InnerApiCredential]:
    async with runtime.session_factory() as db:
        return await service.create_credential(_records(runtime, db, license_id, actor))


async def test_a_secret_is_stored_only_as_its_keyed_hash(
    runtime: Runtime, actor: Actor, make_license: LicenseFactory
) -> None:
    issued = await make_license()
    created = await _credential(runtime, actor, issued.view.license.id)
    async with runtime.session_factory() as db:
        row = await db.get(InnerApiCredential, created.credential.id)
        assert row is not None
        assert row.secret_hash == runtime.hasher.digest(created.secret)
        assert created.secret not in {row.secret_hash, row.secret_hint, row.label}
        assert row.secret_hint == created.secret[-4:]


async def test_calls_are_check_ins_coalesced_until_the_flush(
    runtime: Runtime, actor: Actor, make_license: LicenseFactory, clock: MovableClock
) -> None:
    issued = await make_license()
    license_id = issued.view.license.id
    created = await _credential(runtime, actor, license_id)
    store = SqlInnerApiStore(runtime)
    await store.authenticate(created.secret)  # the first use activates the license
    await flush_check_ins(runtime)
    clock.advance(timedelta(hours=1))
    await asyncio.gather(*(store.authenticate(created.secret) for _ in range(30)))
    assert len(runtime.poll_state.check_ins) == 1  # thirty calls, one pending check-in
    async with runtime.session_factory() as db:
        before = await db.scalar(select(License.last_check_in_at).where(License.id == license_id))
    assert before == clock() - timedelta(hours=1)  # nothing written per request
    assert await flush_check_ins(runtime) == 1
    async with runtime.session_factory() as db:
        license = await db.get(License, license_id)
        assert license is not None
        assert license.last_check_in_at == clock()
        assert license.heartbeat_deadline == clock() + timedelta(days=7)


async def test_first_use_activates_a_license_once_under_concurrency(
    runtime: Runtime, actor: Actor, make_license: LicenseFactory, clock: MovableClock
) -> None:
    issued = await make_license()
    license_id = issued.view.license.id
    assert issued.view.status.status.value == "inactive"
    created = await _credential(runtime, actor, license_id)
    store = SqlInnerApiStore(runtime)
    await asyncio.gather(*(store.authenticate(created.secret) for _ in range(12)))
    async with runtime.session_factory() as db:
        license = await db.get(License, license_id)
        assert license is not None
        assert license.first_activated_at == clock()
        assert (license.status, license.status_reason) == ("active", "ACTIVE")
        events = await db.scalar(
            select(func.count()).where(Event.license_id == license_id, Event.type == "license.activated")
        )
    assert events == 1


async def test_a_revoked_or_unknown_secret_is_refused(
    runtime: Runtime, actor: Actor, make_license: LicenseFactory
) -> None:
    from license_server.errors import InvalidInnerApiSecret

    issued = await make_license()
    created = await _credential(runtime, actor, issued.view.license.id)
    store = SqlInnerApiStore(runtime)
    assert (await store.authenticate(created.secret)).license_id == issued.view.license.id
    async with runtime.session_factory() as db:
        records = _records(runtime, db, issued.view.license.id, actor)
        await service.revoke_credential(records, credential_id=created.credential.id)
    store.forget_credentials()
    for secret in (created.secret, "lsia_unknown", "", None, "x" * 1000):
        with pytest.raises(InvalidInnerApiSecret):
            await store.authenticate(secret)


async def test_overrides_access_modes_and_allow_lists_are_upserts(
    runtime: Runtime, actor: Actor, make_license: LicenseFactory
) -> None:
    license_id = (await make_license()).view.license.id
    async with runtime.session_factory() as db:
        records = _records(runtime, db, license_id, actor)
        for invite in (True, False):
            await service.set_workspace_policy(
                records, workspace_id="ws-1", allow_member_invite=invite, allow_owner_transfer=True
            )
        for mode in (AccessMode.PUBLIC, AccessMode.SSO_VERIFIED):
            await service.set_access_mode(records, app_id="app-1", mode=mode)
        await service.allow_users(records, app_id="app-1", user_ids=["u1", "u2", "u1"])
        view = await service.allow_users(records, app_id="app-1", user_ids=["u2", "u3"])
        policies = (await db.scalars(select(WorkspacePolicyOverride))).all()
        assert [(p.workspace_id, p.allow_member_invite) for p in policies] == [("ws-1", False)]
        assert (await service.access_modes(records, app_ids=["app-1", "app-2", "app-1"])) == {
            "app-1": AccessMode.SSO_VERIFIED,
            "app-2": AccessMode.PRIVATE,
        }
        assert view.allowed_users == ["u1", "u2", "u3"]
        assert await db.scalar(select(func.count()).select_from(AppAllowedUser)) == 3


async def test_concurrent_joins_of_the_default_workspace_record_one_membership(
    runtime: Runtime, actor: Actor, make_license: LicenseFactory
) -> None:
    license_id = (await make_license()).view.license.id
    created = await _credential(runtime, actor, license_id)
    store = SqlInnerApiStore(runtime)
    caller = await store.authenticate(created.secret)
    workspace, account = str(uuid.uuid4()), str(uuid.uuid4())
    async with runtime.session_factory() as db:
        await service.set_default_workspace(_records(runtime, db, license_id, actor), workspace_id=workspace)
    joins = await asyncio.gather(
        *(service.join_default_workspace(store, caller, account_id=uuid.UUID(account)) for _ in range(8))
    )
    assert sorted(join["message"] for join in joins) == ["already a member of the default workspace"] * 7 + [
        "joined the default workspace"
    ]
    async with runtime.session_factory() as db:
        assert await db.scalar(select(func.count()).select_from(DefaultWorkspaceMember)) == 1


async def test_a_plan_sso_change_stamps_every_license_on_that_plan_only(
    runtime: Runtime, actor: Actor, make_license: LicenseFactory, clock: MovableClock
) -> None:
    issued_at = clock()
    async with runtime.session_factory() as db:
        plan = await licenses.create_plan(db, actor=actor, code="sso", name="SSO", clock=clock)
        other = await licenses.create_plan(db, actor=actor, code="other", name="Other", clock=clock)
    on_plan = [(await make_license(plan_ref="sso")).view.license.id for _ in range(3)]
    off_plan = (await make_license(plan_ref="other")).view.license.id
    async with runtime.session_factory() as db:  # one of them already has a settings row: the upsert updates it
        await service.set_default_workspace(_records(runtime, db, on_plan[0], actor), workspace_id=uuid.uuid4())
    clock.advance(timedelta(days=1))
    async with runtime.session_factory() as db:
        await licenses.update_plan(
            db,
            actor=actor,
            plan_ref=plan.code,
            terms=LicenseTerms.model_validate({"webapp_auth": {"allow_sso": True}}),
            clock=clock,
        )
        await licenses.update_plan(
            db, actor=actor, plan_ref=other.code, terms=LicenseTerms.model_validate({"notice_days": 10}), clock=clock
        )
    async with runtime.session_factory() as db:
        for license_id in on_plan:
            settings = await get_settings(db, license_id=license_id)
            assert (settings.sso_app_changed_at, settings.sso_signin_changed_at) == (clock(), issued_at)
        untouched = await get_settings(db, license_id=off_plan)
        assert (untouched.sso_app_changed_at, untouched.sso_signin_changed_at) == (issued_at, issued_at)
        assert (await get_settings(db, license_id=on_plan[0])).default_workspace_id is not None


async def test_info_is_served_from_the_caches_without_touching_the_database(
    runtime: Runtime, actor: Actor, make_license: LicenseFactory
) -> None:
    issued = await make_license()
    created = await _credential(runtime, actor, issued.view.license.id)
    cached = Runtime(
        settings=runtime.settings.model_copy(update={"poll_cache_seconds": 30.0}),
        signer=runtime.signer,
        engine=runtime.engine,
        session_factory=runtime.session_factory,
        clock=runtime.clock,
    )
    store = SqlInnerApiStore(cached)

    async def info() -> bytes:
        return await service.info(store, await store.authenticate(created.secret))

    first = await info()
    statements: list[str] = []

    def record(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(runtime.engine.sync_engine, "before_cursor_execute", record)
    try:
        bodies = [await info() for _ in range(50)]
    finally:
        event.remove(runtime.engine.sync_engine, "before_cursor_execute", record)
    assert statements == []
    assert all(body is first for body in bodies)  # built once, not per request


async def test_a_credential_label_over_200_characters_is_refused_before_anything_is_written(
    runtime: Runtime, actor: Actor, make_license: LicenseFactory
) -> None:
    """On both databases: a validation error naming ``label``, no credential and no audit event (the vendor CLI
    used to hand such a label to the database: stored whole on SQLite, a database error on PostgreSQL)."""
    license_id = (await make_license()).view.license.id
    async with runtime.session_factory() as db:
        with pytest.raises(ValidationFailed) as refused:
            await service.create_credential(_records(runtime, db, license_id, actor), label="x" * 201)
    assert refused.value.field == "label"
    async with runtime.session_factory() as db:
        assert await db.scalar(select(func.count()).select_from(InnerApiCredential)) == 0
        audited = select(func.count()).where(AuditEvent.action == "inner_api.credential_created")
        assert await db.scalar(audited) == 0
