"""License actions through the service layer, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.models import AuditEvent
from license_server.auth.tokens import Actor
from license_server.deployments import service as deployments
from license_server.errors import AlreadyExists, InvalidTransition, LicenseRevoked, ValidationFailed
from license_server.licenses import service
from license_server.licenses.models import License
from license_server.licenses.terms import LicenseTerms
from license_server.runtime import Runtime
from license_server.verifier import Verifier
from tests.conftest import LicenseFactory, MovableClock

DAY = timedelta(days=1)


async def audit_actions(session: AsyncSession, target_id: object) -> list[str]:
    rows = await session.scalars(
        select(AuditEvent.action).where(AuditEvent.target_id == str(target_id)).order_by(AuditEvent.id)
    )
    return list(rows.all())


async def test_issued_key_is_shown_once_and_only_its_keyed_hash_is_stored(
    make_license: LicenseFactory, session: AsyncSession, runtime: Runtime
) -> None:
    issued = await make_license()
    row = await session.get(License, issued.view.license.id)
    assert row is not None
    assert issued.key.startswith("LSK-")
    assert row.key_hash == runtime.hasher.digest(issued.key)
    stored = " ".join(str(v) for v in row.__dict__.values())
    assert issued.key not in stored
    assert issued.key[4:].replace("-", "") not in stored


async def test_new_license_reads_inactive_until_activated(make_license: LicenseFactory) -> None:
    view = (await make_license()).view
    assert (view.status.status.value, view.status.reason.value) == ("inactive", "NOT_ACTIVATED")


async def test_license_starting_later_reads_not_started(make_license: LicenseFactory, clock: MovableClock) -> None:
    view = (await make_license(starts_at=clock() + 10 * DAY)).view
    assert view.status.reason.value == "NOT_STARTED"


async def test_every_action_writes_its_audit_event(
    make_license: LicenseFactory, session: AsyncSession, actor: Actor, runtime: Runtime, clock: MovableClock
) -> None:
    issued = await make_license()
    license_id = issued.view.license.id
    terms = LicenseTerms.model_validate({"max_activations": 5})
    await service.update_license(session, actor=actor, license_id=license_id, terms=terms, clock=clock)
    clock.advance(timedelta(seconds=1))
    await service.renew_license(
        session,
        actor=actor,
        license_id=license_id,
        expires_at=issued.view.license.expires_at + 30 * DAY,
        clock=clock,
    )
    clock.advance(timedelta(seconds=1))
    await service.suspend_license(session, actor=actor, license_id=license_id, reason="unpaid", clock=clock)
    clock.advance(timedelta(seconds=1))
    await service.reinstate_license(session, actor=actor, license_id=license_id, clock=clock)
    clock.advance(timedelta(seconds=1))
    await service.rotate_license_key(session, actor=actor, hasher=runtime.hasher, license_id=license_id, clock=clock)
    clock.advance(timedelta(seconds=1))
    await service.revoke_license(session, actor=actor, license_id=license_id, reason="fraud", clock=clock)
    assert await audit_actions(session, license_id) == [
        "license.issued",
        "license.updated",
        "license.renewed",
        "license.suspended",
        "license.reinstated",
        "license.key_rotated",
        "license.revoked",
    ]
    actors = set((await session.scalars(select(AuditEvent.actor).where(AuditEvent.target_id == str(license_id)))).all())
    assert actors == {actor.name}


async def test_suspend_and_reinstate_change_the_computed_status(
    make_license: LicenseFactory, session: AsyncSession, actor: Actor, clock: MovableClock
) -> None:
    license_id = (await make_license()).view.license.id
    view = await service.suspend_license(session, actor=actor, license_id=license_id, clock=clock)
    assert view.status.reason.value == "SUSPENDED"
    assert view.license.status == "inactive"
    with pytest.raises(InvalidTransition):
        await service.suspend_license(session, actor=actor, license_id=license_id, clock=clock)
    view = await service.reinstate_license(session, actor=actor, license_id=license_id, clock=clock)
    assert view.status.reason.value == "NOT_ACTIVATED"
    with pytest.raises(InvalidTransition):
        await service.reinstate_license(session, actor=actor, license_id=license_id, clock=clock)


async def test_revocation_is_permanent(
    make_license: LicenseFactory, session: AsyncSession, actor: Actor, runtime: Runtime, clock: MovableClock
) -> None:
    issued = await make_license()
    license_id = issued.view.license.id
    view = await service.revoke_license(session, actor=actor, license_id=license_id, clock=clock)
    assert view.status.reason.value == "REVOKED"
    attempts = [
        service.revoke_license(session, actor=actor, license_id=license_id, clock=clock),
        service.reinstate_license(session, actor=actor, license_id=license_id, clock=clock),
        service.suspend_license(session, actor=actor, license_id=license_id, clock=clock),
        service.renew_license(
            session,
            actor=actor,
            license_id=license_id,
            expires_at=issued.view.license.expires_at + DAY,
            clock=clock,
        ),
        service.rotate_license_key(session, actor=actor, hasher=runtime.hasher, license_id=license_id, clock=clock),
        service.update_license(session, actor=actor, license_id=license_id, notes="x", clock=clock),
    ]
    for attempt in attempts:
        with pytest.raises(LicenseRevoked):
            await attempt
    assert (await service.get_license(session, license_id, clock=clock)).status.reason.value == "REVOKED"


async def test_renewal_must_extend_and_a_refused_renewal_writes_nothing(
    make_license: LicenseFactory, session: AsyncSession, actor: Actor, clock: MovableClock
) -> None:
    issued = await make_license()
    license_id, expires_at = issued.view.license.id, issued.view.license.expires_at
    with pytest.raises(ValidationFailed) as raised:
        await service.renew_license(
            session, actor=actor, license_id=license_id, expires_at=expires_at - DAY, clock=clock
        )
    assert raised.value.field == "expires_at"
    session.expunge_all()
    assert (await service.get_license(session, license_id, clock=clock)).license.expires_at == expires_at
    assert await audit_actions(session, license_id) == ["license.issued"]


async def test_renewing_an_expired_license_makes_it_usable_again(
    make_license: LicenseFactory, session: AsyncSession, actor: Actor, clock: MovableClock
) -> None:
    issued = await make_license(expires_at=clock() + DAY)
    license_id = issued.view.license.id
    clock.advance(2 * DAY)
    assert (await service.get_license(session, license_id, clock=clock)).status.status.value == "expired"
    view = await service.renew_license(
        session, actor=actor, license_id=license_id, expires_at=clock() + 365 * DAY, clock=clock
    )
    assert view.status.status.value == "inactive"  # back to "not yet activated", no longer expired


async def test_status_is_computed_on_read_not_trusted_from_storage(
    make_license: LicenseFactory, session: AsyncSession, clock: MovableClock
) -> None:
    issued = await make_license(expires_at=clock() + 10 * DAY)
    license_id = issued.view.license.id
    clock.advance(11 * DAY)
    view = await service.get_license(session, license_id, clock=clock)
    assert view.status.status.value == "expired"
    assert view.license.status == "inactive"  # the materialised value is stale until the sweep runs


async def test_invalid_combined_terms_are_refused_without_a_partial_write(
    make_license: LicenseFactory, session: AsyncSession, actor: Actor, clock: MovableClock
) -> None:
    issued = await make_license(
        terms=LicenseTerms.model_validate({"sso": {"enforced_for_signin": True, "signin_protocol": "saml"}})
    )
    license_id = issued.view.license.id
    with pytest.raises(ValidationFailed) as raised:
        await service.update_license(
            session,
            actor=actor,
            license_id=license_id,
            notes="changed",
            terms=LicenseTerms.model_validate({"sso": {"signin_protocol": ""}}),
            clock=clock,
        )
    assert raised.value.field_errors[0].field.startswith("terms")
    await session.rollback()
    session.expunge_all()
    view = await service.get_license(session, license_id, clock=clock)
    assert view.license.notes == ""
    assert view.terms.sso.signin_protocol == "saml"
    assert await audit_actions(session, license_id) == ["license.issued"]


async def test_plan_change_reaches_every_license_on_the_plan(
    make_license: LicenseFactory, session: AsyncSession, actor: Actor, clock: MovableClock
) -> None:
    plan = await service.create_plan(
        session,
        actor=actor,
        code="team",
        name="Team",
        clock=clock,
        terms=LicenseTerms.model_validate({"max_activations": 2}),
    )
    issued = await make_license(plan_ref="team", terms=None)
    assert issued.view.terms.max_activations == 2
    await service.update_plan(
        session,
        actor=actor,
        plan_ref=str(plan.id),
        clock=clock,
        terms=LicenseTerms.model_validate({"max_activations": 4}),
    )
    session.expunge_all()
    view = await service.get_license(session, issued.view.license.id, clock=clock)
    assert view.terms.max_activations == 4


async def test_rotating_the_key_invalidates_the_old_one(
    make_license: LicenseFactory, session: AsyncSession, actor: Actor, runtime: Runtime, clock: MovableClock
) -> None:
    issued = await make_license()
    rotated = await service.rotate_license_key(
        session, actor=actor, hasher=runtime.hasher, license_id=issued.view.license.id, clock=clock
    )
    assert rotated.key != issued.key
    row = await session.get(License, issued.view.license.id)
    assert row is not None
    assert runtime.hasher.matches(rotated.key, row.key_hash)
    assert not runtime.hasher.matches(issued.key, row.key_hash)


async def test_document_is_signed_and_carries_the_computed_status(
    make_license: LicenseFactory, session: AsyncSession, actor: Actor, runtime: Runtime, clock: MovableClock
) -> None:
    issued = await make_license()
    license_id = issued.view.license.id
    await service.suspend_license(session, actor=actor, license_id=license_id, clock=clock)
    token = await deployments.license_document(
        session, signer=runtime.signer, issuer="test-issuer", license_id=license_id, ttl=DAY, clock=clock
    )
    verifier = Verifier(runtime.signer.keyring().root_public_key, clock=clock)
    claims = verifier.verify(token).claims
    assert claims["license_id"] == str(license_id)
    assert (claims["status"], claims["status_reason"]) == ("inactive", "SUSPENDED")
    assert claims["limits"]["workspaces"] == {"enabled": True, "limit": 5, "used": 0, "over_limit": False}
    assert claims["exp"] - claims["iat"] == DAY.total_seconds()
    assert claims["iss"] == "test-issuer"
    assert issued.key not in token


async def test_duplicate_external_id_is_refused(session: AsyncSession, actor: Actor, clock: MovableClock) -> None:
    await service.create_customer(session, actor=actor, name="A", external_id="crm-1", clock=clock)
    with pytest.raises(AlreadyExists):
        await service.create_customer(session, actor=actor, name="B", external_id="crm-1", clock=clock)


async def test_concurrent_creates_with_one_external_id_yield_exactly_one_customer(
    runtime: Runtime, actor: Actor, clock: MovableClock
) -> None:
    async def attempt(index: int) -> bool:
        async with runtime.session_factory() as db:
            try:
                await service.create_customer(
                    db, actor=actor, name=f"racer {index}", external_id="crm-race", clock=clock
                )
            except AlreadyExists:
                return False
            return True

    results = await asyncio.gather(*(attempt(i) for i in range(8)))
    assert sum(results) == 1
    async with runtime.session_factory() as db:
        audited = await db.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "customer.created")
        )
    assert audited == 1


async def test_list_filters_by_status_and_paginates(
    make_license: LicenseFactory, session: AsyncSession, actor: Actor, clock: MovableClock
) -> None:
    ids = [(await make_license()).view.license.id for _ in range(5)]
    await service.suspend_license(session, actor=actor, license_id=ids[0], clock=clock)
    page, total = await service.list_licenses(session, limit=2, offset=0, clock=clock)
    assert (len(page), total) == (2, 5)
    rest, _ = await service.list_licenses(session, limit=10, offset=2, clock=clock)
    assert {v.license.id for v in page + rest} == set(ids)
    suspended, count = await service.list_licenses(session, limit=10, offset=0, status="inactive", clock=clock)
    assert count == 5
    assert {v.status.reason.value for v in suspended} == {"SUSPENDED", "NOT_ACTIVATED"}


async def test_list_selects_licenses_expiring_within_a_window(
    make_license: LicenseFactory, session: AsyncSession, clock: MovableClock
) -> None:
    soon = (await make_license(expires_at=clock() + 10 * DAY)).view.license.id
    await make_license(expires_at=clock() + 90 * DAY)
    lapsed = await make_license(starts_at=clock() - 9 * DAY, expires_at=clock() + DAY)
    clock.advance(2 * DAY)
    views, total = await service.list_licenses(session, limit=10, offset=0, expires_within=30 * DAY, clock=clock)
    assert [v.license.id for v in views] == [soon]
    assert total == 1
    assert lapsed.view.license.id not in {v.license.id for v in views}
