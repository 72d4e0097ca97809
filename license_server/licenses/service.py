"""License actions. Each is one transaction that writes the change and its audit event together.

Services take the session explicitly and keyword-only arguments; they commit, and anything they raise leaves
nothing written.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from license_server.auth.audit import record_audit
from license_server.auth.hashing import SecretHasher
from license_server.auth.tokens import Actor
from license_server.clock import Clock, utcnow
from license_server.errors import (
    AlreadyExists,
    CustomerNotFound,
    FieldError,
    InvalidTransition,
    LicenseNotFound,
    LicenseRevoked,
    PlanNotFound,
    ValidationFailed,
)
from license_server.events.service import EventType, emit_event
from license_server.licenses.license_keys import generate_license_key, key_hint
from license_server.licenses.models import Customer, License, Plan
from license_server.licenses.sso_changes import record_sso_changes
from license_server.licenses.terms import LicenseTerms, effective_terms, merge_overrides, terms_overrides
from license_server.lifecycle.status import StatusResult, compute_status
from license_server.lifecycle.transitions import (
    born,
    lock_for_many_licenses,
    transition_license,
    transition_licenses,
)
from license_server.replicas.invalidation import Topic, publish


@dataclass(frozen=True)
class LicenseView:
    """A license with everything needed to present it: effective terms and the status computed now."""

    license: License
    customer: Customer
    plan: Plan | None
    terms: LicenseTerms
    status: StatusResult


@dataclass(frozen=True)
class IssuedLicense:
    view: LicenseView
    key: str  # shown once, never stored


def license_view(license: License, now: datetime) -> LicenseView:
    """A loaded license (customer and plan loaded too) with its effective terms and status computed at ``now``."""
    terms = license.effective_terms(license.plan)
    return LicenseView(license, license.customer, license.plan, terms, compute_status(license.facts(terms), now))


def _validated_terms(plan: Plan | None, overrides: dict[str, Any], *, field: str) -> LicenseTerms:
    try:
        return effective_terms(plan.terms if plan else None, overrides)
    except ValidationError as exc:
        errors = [FieldError(".".join([field, *map(str, err["loc"])]), err["msg"]) for err in exc.errors()]
        raise ValidationFailed("the combined plan and license terms are invalid", errors=errors) from exc


# -- customers --------------------------------------------------------------------------------------------------
def _external_id_taken() -> AlreadyExists:
    return AlreadyExists("a customer with this external_id exists", field="external_id", code="customer_exists")


async def _refuse_taken_external_id(session: AsyncSession, external_id: str | None) -> None:
    if external_id is not None and await session.scalar(select(Customer.id).where(Customer.external_id == external_id)):
        raise _external_id_taken()


async def create_customer(
    session: AsyncSession,
    *,
    actor: Actor,
    name: str,
    contact_email: str | None = None,
    external_id: str | None = None,
    clock: Clock = utcnow,
) -> Customer:
    await _refuse_taken_external_id(session, external_id)
    customer = Customer(
        name=name,
        contact_email=contact_email,
        external_id=external_id,
        created_at=clock(),
        updated_at=clock(),
    )
    session.add(customer)
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent create with the same external_id won the race
        await session.rollback()
        raise _external_id_taken() from exc
    await record_audit(
        session,
        actor=actor,
        action="customer.created",
        target_type="customer",
        target_id=customer.id,
        detail={"name": name, "external_id": external_id},
        clock=clock,
    )
    await session.commit()
    return customer


class Unchanged(enum.Enum):
    """For a field an update leaves as it is (``None`` means "clear it")."""

    KEEP = "keep"


KEEP = Unchanged.KEEP


async def update_customer(
    session: AsyncSession,
    *,
    actor: Actor,
    customer_id: uuid.UUID,
    name: str | None = None,
    contact_email: str | Unchanged | None = KEEP,
    external_id: str | Unchanged | None = KEEP,
    clock: Clock = utcnow,
) -> Customer:
    """Change what was given (``None`` clears the email or the external id; a name cannot be cleared). The name and
    external id are in the customer's signed license documents: every replica re-signs them at its next poll."""
    customer = await session.get(Customer, customer_id, with_for_update=True)
    if customer is None:
        raise CustomerNotFound(f"no customer with id {customer_id}", field="customer_id")
    changes: dict[str, Any] = {}
    if name is not None and name != customer.name:
        customer.name = changes["name"] = name
    if contact_email is not KEEP and contact_email != customer.contact_email:
        customer.contact_email = contact_email
        changes["contact_email"] = True  # an address is personal data: the log says it changed
    if external_id is not KEEP and external_id != customer.external_id:
        await _refuse_taken_external_id(session, external_id)  # another customer's: it differs from this one's
        customer.external_id = changes["external_id"] = external_id
    if not changes:
        return customer
    customer.updated_at = clock()
    await record_audit(
        session,
        actor=actor,
        action="customer.updated",
        target_type="customer",
        target_id=customer.id,
        detail=changes,
        clock=clock,
    )
    if "name" in changes or "external_id" in changes:
        license_ids = await session.scalars(select(License.id).where(License.customer_id == customer.id))
        await publish(session, Topic.LICENSE, [str(license_id) for license_id in license_ids])
    try:
        await session.commit()
    except IntegrityError as exc:  # a concurrent change took the external_id first
        await session.rollback()
        raise _external_id_taken() from exc
    return customer


async def get_customer(session: AsyncSession, customer_id: uuid.UUID) -> Customer:
    customer = await session.get(Customer, customer_id)
    if customer is None:
        raise CustomerNotFound(f"no customer with id {customer_id}", field="customer_id")
    return customer


async def list_customers(session: AsyncSession, *, limit: int, offset: int) -> tuple[list[Customer], int]:
    total = await session.scalar(select(func.count()).select_from(Customer))
    rows = await session.scalars(
        select(Customer).order_by(Customer.created_at, Customer.id).limit(limit).offset(offset)
    )
    return list(rows.all()), int(total or 0)


# -- plans ------------------------------------------------------------------------------------------------------
async def create_plan(
    session: AsyncSession,
    *,
    actor: Actor,
    code: str,
    name: str,
    description: str = "",
    terms: LicenseTerms | None = None,
    clock: Clock = utcnow,
) -> Plan:
    if await session.scalar(select(Plan.id).where(Plan.code == code)):
        raise AlreadyExists(f"a plan with code {code!r} exists", field="code", code="plan_exists")
    overrides = terms_overrides(terms)
    _validated_terms(None, overrides, field="terms")
    plan = Plan(code=code, name=name, description=description, terms=overrides, created_at=clock(), updated_at=clock())
    session.add(plan)
    try:
        await session.flush()
    except IntegrityError as exc:
        await session.rollback()
        raise AlreadyExists(f"a plan with code {code!r} exists", field="code", code="plan_exists") from exc
    await record_audit(
        session,
        actor=actor,
        action="plan.created",
        target_type="plan",
        target_id=plan.id,
        detail={"code": code, "terms": overrides},
        clock=clock,
    )
    await session.commit()
    return plan


async def update_plan(
    session: AsyncSession,
    *,
    actor: Actor,
    plan_ref: str,
    name: str | None = None,
    description: str | None = None,
    terms: LicenseTerms | None = None,
    clock: Clock = utcnow,
) -> Plan:
    plan = await resolve_plan(session, plan_ref)
    changes: dict[str, Any] = {}
    if terms is not None:
        merged = merge_overrides(plan.terms, terms_overrides(terms))
        before = _validated_terms(None, plan.terms, field="terms")
        after = _validated_terms(None, merged, field="terms")
        plan.terms = merged
        changes["terms"] = terms_overrides(terms)
        await record_sso_changes(session, before=before, after=after, now=clock(), plan_id=plan.id)
        changes["licenses_rederived"] = await _rederive_plan_licenses(session, plan, now=clock())
    if name is not None:
        plan.name = changes["name"] = name
    if description is not None:
        plan.description = changes["description"] = description
    plan.updated_at = clock()
    await record_audit(
        session,
        actor=actor,
        action="plan.updated",
        target_type="plan",
        target_id=plan.id,
        detail=changes,
        clock=clock,
    )
    await session.commit()
    return plan


async def _rederive_plan_licenses(session: AsyncSession, plan: Plan, *, now: datetime) -> int:
    """After a plan's terms change: every license on it gets its schedule and stored status re-derived (with the
    events of each change), so ``?status=`` filters and the sweep see the new notice, grace and heartbeat windows.

    The licenses are locked (PostgreSQL) after the lock the sweep takes too, so the two never deadlock; a license
    whose own overrides no longer combine with the plan's new terms refuses the whole change, naming it. Returns how
    many licenses changed status.
    """
    await lock_for_many_licenses(session)
    licenses = (
        await session.scalars(select(License).where(License.plan_id == plan.id).order_by(License.id).with_for_update())
    ).all()
    derived = []
    for license in licenses:
        terms = _validated_terms(plan, license.terms, field=f"licenses.{license.id}.terms")
        license.refresh_schedule(terms)
        derived.append((license, terms))
    changes = await transition_licenses(session, derived, now)
    return sum(change.changed for change in changes)


async def resolve_plan(session: AsyncSession, plan_ref: str) -> Plan:
    """A plan by id or by code."""
    try:
        plan = await session.get(Plan, uuid.UUID(plan_ref))
    except ValueError:
        plan = await session.scalar(select(Plan).where(Plan.code == plan_ref))
    if plan is None:
        raise PlanNotFound(f"no plan with id or code {plan_ref!r}", field="plan")
    return plan


async def list_plans(session: AsyncSession, *, limit: int, offset: int) -> tuple[list[Plan], int]:
    total = await session.scalar(select(func.count()).select_from(Plan))
    rows = await session.scalars(select(Plan).order_by(Plan.code).limit(limit).offset(offset))
    return list(rows.all()), int(total or 0)


# -- licenses ---------------------------------------------------------------------------------------------------
async def issue_license(
    session: AsyncSession,
    *,
    actor: Actor,
    hasher: SecretHasher,
    customer_id: uuid.UUID,
    expires_at: datetime,
    starts_at: datetime | None = None,
    plan_ref: str | None = None,
    terms: LicenseTerms | None = None,
    notes: str = "",
    metadata: dict[str, Any] | None = None,
    clock: Clock = utcnow,
) -> IssuedLicense:
    now = clock()
    customer = await get_customer(session, customer_id)
    plan = await resolve_plan(session, plan_ref) if plan_ref else None
    starts_at = starts_at or now
    if expires_at <= starts_at:
        raise ValidationFailed("expires_at must be after starts_at", field="expires_at")
    overrides = terms_overrides(terms)
    effective = _validated_terms(plan, overrides, field="terms")
    key = generate_license_key()
    license = License(
        customer_id=customer.id,
        plan_id=plan.id if plan else None,
        key_hash=hasher.digest(key),
        key_hint=key_hint(key),
        starts_at=starts_at,
        expires_at=expires_at,
        terms=overrides,
        notes=notes,
        extra_metadata=metadata or {},
        created_at=now,
        updated_at=now,
    )
    license.customer, license.plan = customer, plan
    license.refresh_schedule(effective)
    born(license)
    session.add(license)
    await session.flush()
    await record_audit(
        session,
        actor=actor,
        action="license.issued",
        target_type="license",
        target_id=license.id,
        detail={
            "customer_id": str(customer.id),
            "plan": plan.code if plan else None,
            "starts_at": starts_at.isoformat(),
            "expires_at": expires_at.isoformat(),
            "terms": overrides,
        },
        clock=clock,
    )
    await transition_license(session, license, effective, now)  # e.g. issued already expired: license.expired
    await session.commit()
    return IssuedLicense(view=license_view(license, now), key=key)


# The metadata key a bulk import records each row's idempotency key under (``licenses issue --from-csv``).
IMPORT_KEY = "import_key"


async def license_id_by_import_key(session: AsyncSession, import_key: str) -> uuid.UUID | None:
    """The license a bulk import already issued for this key, if any: a second run of the same file issues nothing
    twice. The key lives in the license's metadata, where the import put it; no index, as imports are rare."""
    found: uuid.UUID | None = await session.scalar(
        select(License.id).where(License.extra_metadata[IMPORT_KEY].as_string() == import_key).limit(1)
    )
    return found


async def _load_license(session: AsyncSession, license_id: uuid.UUID, *, for_update: bool = False) -> License:
    query = (
        select(License)
        .where(License.id == license_id)
        .options(selectinload(License.customer), selectinload(License.plan))
    )
    if for_update:
        query = query.with_for_update()
    license = await session.scalar(query)
    if license is None:
        raise LicenseNotFound(f"no license with id {license_id}", field="license_id")
    return license


async def get_license(session: AsyncSession, license_id: uuid.UUID, *, clock: Clock = utcnow) -> LicenseView:
    return license_view(await _load_license(session, license_id), clock())


async def list_licenses(
    session: AsyncSession,
    *,
    limit: int,
    offset: int,
    status: str | None = None,
    customer_id: uuid.UUID | None = None,
    expires_within: timedelta | None = None,
    clock: Clock = utcnow,
) -> tuple[list[LicenseView], int]:
    """Filtering by status uses the stored status (``lifecycle.transitions`` writes it on every change of facts, and
    the sweep as time passes); every returned item carries the status computed now. ``expires_within`` selects
    licenses whose expiry falls between now and now + that."""
    conditions = []
    if expires_within is not None:
        now = clock()
        conditions += [License.expires_at > now, License.expires_at <= now + expires_within]
    if status is not None:
        conditions.append(License.status == status)
    if customer_id is not None:
        conditions.append(License.customer_id == customer_id)
    total = await session.scalar(select(func.count()).select_from(License).where(*conditions))
    rows = await session.scalars(
        select(License)
        .where(*conditions)
        .options(selectinload(License.customer), selectinload(License.plan))
        .order_by(License.created_at, License.id)
        .limit(limit)
        .offset(offset)
    )
    now = clock()
    return [license_view(license, now) for license in rows.all()], int(total or 0)


async def _act(
    session: AsyncSession,
    license: License,
    *,
    actor: Actor,
    action: str,
    detail: dict[str, Any],
    clock: Clock,
    event: EventType | None = None,
) -> LicenseView:
    """Finish an action: emit its domain event, audit, move the stored status (with the events of that change, after
    the action's own), commit."""
    now = clock()
    license.updated_at = now
    view = license_view(license, now)
    license.refresh_schedule(view.terms)
    if event is not None:
        emit_event(session, type=event, license_id=license.id, data={"reason": detail.get("reason", "")}, clock=clock)
    await record_audit(
        session,
        actor=actor,
        action=action,
        target_type="license",
        target_id=license.id,
        detail=detail,
        clock=clock,
    )
    await transition_license(session, license, view.terms, now)
    await session.commit()
    return view


async def _mutable_license(session: AsyncSession, license_id: uuid.UUID) -> License:
    license = await _load_license(session, license_id, for_update=True)
    if license.is_revoked:
        raise LicenseRevoked("a revoked license cannot be changed", field="license_id")
    return license


async def update_license(
    session: AsyncSession,
    *,
    actor: Actor,
    license_id: uuid.UUID,
    terms: LicenseTerms | None = None,
    starts_at: datetime | None = None,
    plan_ref: str | None = None,
    notes: str | None = None,
    metadata: dict[str, Any] | None = None,
    clock: Clock = utcnow,
) -> LicenseView:
    license = await _mutable_license(session, license_id)
    before = license.effective_terms(license.plan)
    detail: dict[str, Any] = {}
    if plan_ref is not None:
        plan = await resolve_plan(session, plan_ref)
        license.plan_id, license.plan = plan.id, plan
        detail["plan"] = plan.code
    if terms is not None:
        changes = terms_overrides(terms)
        license.terms = merge_overrides(license.terms, changes)
        detail["terms"] = changes
    after = _validated_terms(license.plan, license.terms, field="terms")
    if starts_at is not None:
        if starts_at >= license.expires_at:
            raise ValidationFailed("starts_at must be before expires_at", field="starts_at")
        license.starts_at = starts_at
        detail["starts_at"] = starts_at.isoformat()
    if notes is not None:
        license.notes = notes
        detail["notes"] = True  # the text itself may be long or sensitive; the log says it changed
    if metadata is not None:
        license.extra_metadata = metadata
        detail["metadata"] = True
    await record_sso_changes(session, before=before, after=after, now=clock(), license_id=license.id)
    return await _act(session, license, actor=actor, action="license.updated", detail=detail, clock=clock)


async def renew_license(
    session: AsyncSession, *, actor: Actor, license_id: uuid.UUID, expires_at: datetime, clock: Clock = utcnow
) -> LicenseView:
    license = await _mutable_license(session, license_id)
    if expires_at <= license.expires_at:
        raise ValidationFailed("a renewal must move expires_at later than the current expiry", field="expires_at")
    previous = license.expires_at
    license.renew(expires_at)
    return await _act(
        session,
        license,
        actor=actor,
        action="license.renewed",
        detail={"previous_expires_at": previous.isoformat(), "expires_at": expires_at.isoformat()},
        clock=clock,
        event=EventType.LICENSE_RENEWED,
    )


async def suspend_license(
    session: AsyncSession, *, actor: Actor, license_id: uuid.UUID, reason: str = "", clock: Clock = utcnow
) -> LicenseView:
    license = await _mutable_license(session, license_id)
    if license.is_suspended:
        raise InvalidTransition("the license is already suspended", field="license_id")
    license.suspend(clock())
    return await _act(
        session,
        license,
        actor=actor,
        action="license.suspended",
        detail={"reason": reason},
        clock=clock,
        event=EventType.LICENSE_SUSPENDED,
    )


async def reinstate_license(
    session: AsyncSession, *, actor: Actor, license_id: uuid.UUID, clock: Clock = utcnow
) -> LicenseView:
    license = await _mutable_license(session, license_id)
    if not license.is_suspended:
        raise InvalidTransition("only a suspended license can be reinstated", field="license_id")
    license.reinstate()
    return await _act(
        session,
        license,
        actor=actor,
        action="license.reinstated",
        detail={},
        clock=clock,
        event=EventType.LICENSE_REINSTATED,
    )


async def revoke_license(
    session: AsyncSession, *, actor: Actor, license_id: uuid.UUID, reason: str = "", clock: Clock = utcnow
) -> LicenseView:
    license = await _mutable_license(session, license_id)
    license.revoke(clock())
    return await _act(
        session,
        license,
        actor=actor,
        action="license.revoked",
        detail={"reason": reason},
        clock=clock,
        event=EventType.LICENSE_REVOKED,
    )


async def rotate_license_key(
    session: AsyncSession, *, actor: Actor, hasher: SecretHasher, license_id: uuid.UUID, clock: Clock = utcnow
) -> IssuedLicense:
    license = await _mutable_license(session, license_id)
    key = generate_license_key()
    license.key_hash, license.key_hint = hasher.digest(key), key_hint(key)
    view = await _act(session, license, actor=actor, action="license.key_rotated", detail={}, clock=clock)
    return IssuedLicense(view=view, key=key)


# -- keyset pages (the console's lists: their cost does not grow with the table) ---------------------------------
@dataclass(frozen=True)
class LicenseCursor:
    """Where a page of licenses ends, in the list's order (created_at, id); the next page starts after it."""

    created_at: datetime
    id: uuid.UUID


async def page_licenses(
    session: AsyncSession,
    *,
    limit: int,
    after: LicenseCursor | None = None,
    status: str | None = None,
    customer_id: uuid.UUID | None = None,
    clock: Clock = utcnow,
) -> tuple[list[LicenseView], LicenseCursor | None]:
    """One page of licenses, oldest first, and the cursor of the next page (None on the last). No total is counted:
    a count is a scan of every matching row. Filters ride on indexes: (created_at, id), (status, created_at, id) and
    (customer_id)."""
    conditions = []
    if status is not None:
        conditions.append(License.status == status)
    if customer_id is not None:
        conditions.append(License.customer_id == customer_id)
    if after is not None:
        conditions.append(
            (License.created_at > after.created_at)
            | ((License.created_at == after.created_at) & (License.id > after.id))
        )
    rows = list(
        (
            await session.scalars(
                select(License)
                .where(*conditions)
                .options(selectinload(License.customer), selectinload(License.plan))
                .order_by(License.created_at, License.id)
                .limit(limit + 1)
            )
        ).all()
    )
    now = clock()
    page, more = rows[:limit], len(rows) > limit
    cursor = LicenseCursor(page[-1].created_at, page[-1].id) if more else None
    return [license_view(license, now) for license in page], cursor


async def licenses_expiring_soon(
    session: AsyncSession, *, within: timedelta, limit: int, clock: Clock = utcnow
) -> list[LicenseView]:
    """Unrevoked licenses whose expiry falls in the next ``within``, soonest first (index on expires_at)."""
    now = clock()
    rows = await session.scalars(
        select(License)
        .where(License.expires_at > now, License.expires_at <= now + within, License.revoked_at.is_(None))
        .options(selectinload(License.customer), selectinload(License.plan))
        .order_by(License.expires_at, License.id)
        .limit(limit)
    )
    return [license_view(license, now) for license in rows.all()]


async def licenses_in_status(
    session: AsyncSession, *, status: str, limit: int, clock: Clock = utcnow
) -> list[LicenseView]:
    """Licenses whose stored status is ``status`` (e.g. lost: deployments gone quiet), by the (status, expires_at)
    index; each with its status computed now."""
    rows = await session.scalars(
        select(License)
        .where(License.status == status)
        .options(selectinload(License.customer), selectinload(License.plan))
        .order_by(License.expires_at, License.id)
        .limit(limit)
    )
    now = clock()
    return [license_view(license, now) for license in rows.all()]


async def search_customers(session: AsyncSession, *, query: str, limit: int) -> list[Customer]:
    """Customers whose name starts with ``query`` (any case; the lower(name) index), or whose contact email or
    external id is exactly it."""
    text = query.strip()
    if not text:
        return []
    folded = text.lower()
    by_name = (func.lower(Customer.name) >= folded) & (func.lower(Customer.name) < folded + "\U0010ffff")
    rows = await session.scalars(
        select(Customer)
        .where(by_name | (Customer.contact_email == text) | (Customer.external_id == text))
        .order_by(func.lower(Customer.name), Customer.id)
        .limit(limit)
    )
    return list(rows.all())
