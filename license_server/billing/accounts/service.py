"""Platforms and their secrets, billing accounts, subscriptions, overrides and flex.

Staff actions take an ``Actor``, commit, and write one audit event each. The platform API's reads go through
``AccountSnapshot``s: everything the effective limits of one account depend on, loaded in one go and cached for a
few seconds (``BillingState.accounts``); every staff write here drops the cached snapshot in this process.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.audit import record_audit
from license_server.auth.hashing import SecretHasher
from license_server.auth.throttle import CredentialKind, limiter_key
from license_server.auth.tokens import Actor
from license_server.billing.accounts.models import (
    ACTIVE_STATUSES,
    BillingAccount,
    BillingPlatform,
    LimitOverride,
    PlatformSecret,
    Subscription,
    SubscriptionStatus,
)
from license_server.billing.accounts.snapshots import AccountSnapshot, PlatformSnapshot, SubscriptionView
from license_server.billing.clocks.service import account_clock, attach_account, frozen_now_of, get_clock
from license_server.billing.limits import SEED_RESTRICTIVE_DEFAULTS, LimitFacts
from license_server.billing.plans.terms import billing_terms
from license_server.billing.sql import upsert_insert
from license_server.billing.state import BillingState
from license_server.billing.subscriptions import service as lifecycle
from license_server.billing.subscriptions.service import start_lifecycle
from license_server.clock import Clock, utcnow
from license_server.errors import (
    BillingAccountNotFound,
    InvalidPlatformSecret,
    PlanNotFound,
    PlatformNotFound,
    RateLimited,
    ValidationFailed,
)
from license_server.licenses.models import Plan

SECRET_PREFIX = "lsbp_"  # noqa: S105 - a public prefix that makes platform secrets recognisable, not a secret
MAX_SECRET_LENGTH = 256


def generate_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def platform_snapshot(platform: BillingPlatform) -> PlatformSnapshot:
    return PlatformSnapshot(
        id=platform.id,
        name=platform.name,
        billing_enabled=platform.billing_enabled,
        default_plan_id=platform.default_plan_id,
        restrictive_defaults=dict(platform.restrictive_defaults),
    )


async def authenticate_platform(state: BillingState, secret: str | None, *, address: str | None) -> PlatformSnapshot:
    """The platform a bearer secret stands for. Failures count per address for platform secrets in the limiter the
    other secrets use (auth/throttle.py), so guessing platform secrets hits 429 as fast as guessing admin tokens,
    and never blocks another kind of credential."""
    key = limiter_key(CredentialKind.PLATFORM_SECRET, address)
    retry = state.failed_auth_limiter.retry_after(key)
    if retry is not None:
        raise RateLimited(retry, f"too many failed authentications from this address; retry after {retry} s")
    if not secret or not secret.startswith(SECRET_PREFIX) or len(secret) > MAX_SECRET_LENGTH:
        await state.failed_auth_limiter.record(key, secret)
        raise InvalidPlatformSecret("send Authorization: Bearer <platform secret>")
    digest = state.hasher().digest(secret)  # one HMAC and one indexed lookup, known secret or not

    async def load() -> PlatformSnapshot:
        async with state.session_factory() as session:
            platform = await session.scalar(
                select(BillingPlatform)
                .join(PlatformSecret, PlatformSecret.platform_id == BillingPlatform.id)
                .where(PlatformSecret.secret_hash == digest, PlatformSecret.revoked_at.is_(None))
            )
            if platform is None:
                raise InvalidPlatformSecret("the platform secret is unknown or revoked")
            return platform_snapshot(platform)

    try:
        return await state.platforms.get(digest, load)
    except InvalidPlatformSecret:
        await state.failed_auth_limiter.record(key, secret)
        raise


async def account_snapshot(
    state: BillingState, platform: PlatformSnapshot, external_id: str, *, create: bool = True
) -> AccountSnapshot:
    """The account's snapshot (cached a few seconds). An account seen for the first time is created, on the
    platform's default plan when it has one."""

    async def load() -> AccountSnapshot:
        async with state.session_factory() as session:
            account = await _find_account(session, platform.id, external_id)
            if account is None:
                if not create:
                    raise BillingAccountNotFound(f"no billing account {external_id!r}", field="external_id")
                async with state.write_gate:
                    account = await _create_on_first_sight(session, platform, external_id, state.clock())
            return await load_snapshot(session, platform, account, test_now=await frozen_now_of(session, account.id))

    return await state.accounts.get((platform.id, external_id), load)


async def _find_account(session: AsyncSession, platform_id: uuid.UUID, external_id: str) -> BillingAccount | None:
    return await session.scalar(
        select(BillingAccount).where(
            BillingAccount.platform_id == platform_id, BillingAccount.external_id == external_id
        )
    )


async def _create_on_first_sight(
    session: AsyncSession, platform: PlatformSnapshot, external_id: str, now: datetime, *, on_default_plan: bool = True
) -> BillingAccount:
    """Insert-if-absent, so two replicas seeing a new account at once create one account and one subscription."""
    dialect = session.get_bind().dialect.name
    account_id = uuid.uuid4()
    inserted = await session.execute(
        upsert_insert(dialect, BillingAccount.__table__)
        .values(id=account_id, platform_id=platform.id, external_id=external_id, flex_enabled=False, created_at=now)
        .on_conflict_do_nothing(index_elements=["platform_id", "external_id"])
    )
    if inserted.rowcount == 1 and on_default_plan and platform.default_plan_id is not None:  # type: ignore[attr-defined]
        plan = await session.get(Plan, platform.default_plan_id)
        if plan is not None:
            session.add(_new_subscription(account_id, plan, now, trial_days=None, anchor=None))
    await session.commit()
    account = await _find_account(session, platform.id, external_id)
    assert account is not None
    return account


def _new_subscription(
    account_id: uuid.UUID, plan: Plan, now: datetime, *, trial_days: int | None, anchor: datetime | None
) -> Subscription:
    terms = billing_terms(plan.billing)
    days = terms.trial_days if trial_days is None else trial_days
    subscription = Subscription(
        id=uuid.uuid4(),
        account_id=account_id,
        plan_id=plan.id,
        anchor_at=anchor or now,
        trial_ends_at=now + timedelta(days=days) if days else None,
        canceled_at=None,
        created_at=now,
        updated_at=now,
    )
    start_lifecycle(subscription, terms, now)  # its first term and status, by the lifecycle's one rule
    return subscription


async def load_snapshot(
    session: AsyncSession, platform: PlatformSnapshot, account: BillingAccount, *, test_now: datetime | None = None
) -> AccountSnapshot:
    """Everything the account's limits depend on; ``test_now``: the frozen time of the test clock it follows."""
    rows = (
        await session.execute(
            select(Subscription, Plan)
            .join(Plan, Plan.id == Subscription.plan_id)
            .where(Subscription.account_id == account.id)
            .order_by(Subscription.anchor_at, Subscription.id)
        )
    ).all()
    views = tuple(SubscriptionView(sub, plan.code, billing_terms(plan.billing)) for sub, plan in rows)
    active = [view for view in views if view.subscription.is_standing()]
    overrides = {
        row.key: row.limit
        for row in (await session.scalars(select(LimitOverride).where(LimitOverride.account_id == account.id))).all()
    }
    default_terms = None
    if platform.default_plan_id is not None:
        default_plan = await session.get(Plan, platform.default_plan_id)
        default_terms = billing_terms(default_plan.billing) if default_plan else None
    facts = LimitFacts(
        billing_enabled=platform.billing_enabled,
        overrides=overrides,
        active_plans=tuple(view.terms.quota_map() for view in active),
        restrictive_defaults=platform.restrictive_defaults,
    )
    return AccountSnapshot(
        account_id=account.id,
        platform=platform,
        external_id=account.external_id,
        flex_enabled=account.flex_enabled,
        facts=facts,
        subscriptions=views,
        primary=active[0] if active else None,
        default_plan_terms=default_terms,
        test_now=test_now,
    )


# -- platforms (staff) -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CreatedPlatform:
    platform: BillingPlatform
    secret: str  # shown once, never stored
    secret_id: uuid.UUID


async def _plan_by_ref(session: AsyncSession, plan_ref: str, field: str) -> Plan:
    try:
        plan = await session.get(Plan, uuid.UUID(plan_ref))
    except ValueError:
        plan = await session.scalar(select(Plan).where(Plan.code == plan_ref))
    if plan is None:
        raise PlanNotFound(f"no plan with id or code {plan_ref!r}", field=field)
    return plan


def _checked_defaults(defaults: dict[str, int] | None) -> dict[str, int]:
    return dict(SEED_RESTRICTIVE_DEFAULTS) if defaults is None else dict(defaults)


async def create_platform(
    session: AsyncSession,
    *,
    actor: Actor,
    hasher: SecretHasher,
    name: str,
    default_plan: str | None = None,
    billing_enabled: bool = True,
    restrictive_defaults: dict[str, int] | None = None,
    clock: Clock = utcnow,
) -> CreatedPlatform:
    now = clock()
    plan = await _plan_by_ref(session, default_plan, "default_plan") if default_plan else None
    platform = BillingPlatform(
        id=uuid.uuid4(),
        name=name,
        billing_enabled=billing_enabled,
        default_plan_id=plan.id if plan else None,
        restrictive_defaults=_checked_defaults(restrictive_defaults),
        created_at=now,
        created_by=actor.name,
        updated_at=now,
    )
    session.add(platform)
    await session.flush()
    secret, secret_row = _new_secret(platform.id, hasher, actor, now)
    session.add(secret_row)
    await record_audit(
        session,
        actor=actor,
        action="billing.platform_created",
        target_type="billing_platform",
        target_id=platform.id,
        detail={"name": name, "default_plan": plan.code if plan else None, "billing_enabled": billing_enabled},
        clock=clock,
    )
    await session.commit()
    return CreatedPlatform(platform, secret, secret_row.id)


def _new_secret(
    platform_id: uuid.UUID, hasher: SecretHasher, actor: Actor, now: datetime
) -> tuple[str, PlatformSecret]:
    secret = generate_secret()
    row = PlatformSecret(
        id=uuid.uuid4(),
        platform_id=platform_id,
        secret_hash=hasher.digest(secret),
        secret_hint=secret[-4:],
        created_at=now,
        created_by=actor.name,
    )
    return secret, row


async def get_platform(session: AsyncSession, platform_id: uuid.UUID) -> BillingPlatform:
    platform = await session.get(BillingPlatform, platform_id)
    if platform is None:
        raise PlatformNotFound(f"no platform with id {platform_id}", field="platform_id")
    return platform


async def list_platforms(session: AsyncSession) -> list[BillingPlatform]:
    return list((await session.scalars(select(BillingPlatform).order_by(BillingPlatform.created_at))).all())


async def update_platform(
    session: AsyncSession,
    *,
    actor: Actor,
    platform_id: uuid.UUID,
    changes: dict[str, Any],
    clock: Clock = utcnow,
) -> BillingPlatform:
    """``changes`` holds only what the caller set: name, billing_enabled, default_plan (None clears it),
    restrictive_defaults (None restores seed 004's)."""
    for required in ("name", "billing_enabled"):
        if required in changes and changes[required] is None:
            raise ValidationFailed(f"{required} cannot be null", field=required)
    platform = await get_platform(session, platform_id)
    recorded: dict[str, Any] = {}
    if "name" in changes:
        platform.name = recorded["name"] = changes["name"]
    if "billing_enabled" in changes:
        platform.billing_enabled = recorded["billing_enabled"] = bool(changes["billing_enabled"])
    if "default_plan" in changes:
        ref = changes["default_plan"]
        plan = await _plan_by_ref(session, ref, "default_plan") if ref else None
        platform.default_plan_id = plan.id if plan else None
        recorded["default_plan"] = plan.code if plan else None
    if "restrictive_defaults" in changes:
        # null restores seed 004's defaults
        platform.restrictive_defaults = recorded["restrictive_defaults"] = _checked_defaults(
            changes["restrictive_defaults"]
        )
    platform.updated_at = clock()
    await record_audit(
        session,
        actor=actor,
        action="billing.platform_updated",
        target_type="billing_platform",
        target_id=platform.id,
        detail=recorded,
        clock=clock,
    )
    await session.commit()
    return platform


async def list_platform_secrets(session: AsyncSession, platform_id: uuid.UUID) -> list[PlatformSecret]:
    await get_platform(session, platform_id)
    rows = await session.scalars(
        select(PlatformSecret).where(PlatformSecret.platform_id == platform_id).order_by(PlatformSecret.created_at)
    )
    return list(rows.all())


async def add_platform_secret(
    session: AsyncSession, *, actor: Actor, hasher: SecretHasher, platform_id: uuid.UUID, clock: Clock = utcnow
) -> tuple[str, PlatformSecret]:
    """A new secret beside the live ones (rotate: add, deploy, then revoke the old one)."""
    await get_platform(session, platform_id)
    secret, row = _new_secret(platform_id, hasher, actor, clock())
    session.add(row)
    await record_audit(
        session,
        actor=actor,
        action="billing.platform_secret_created",
        target_type="billing_platform",
        target_id=platform_id,
        detail={"secret_id": str(row.id)},
        clock=clock,
    )
    await session.commit()
    return secret, row


async def revoke_platform_secret(
    session: AsyncSession, *, actor: Actor, platform_id: uuid.UUID, secret_id: uuid.UUID, clock: Clock = utcnow
) -> PlatformSecret:
    """Idempotent: revoking a revoked secret returns it unchanged."""
    row = await session.get(PlatformSecret, secret_id)
    if row is None or row.platform_id != platform_id:
        raise PlatformNotFound(f"platform {platform_id} has no secret {secret_id}", field="secret_id")
    if row.revoked_at is None:
        row.revoked_at, row.revoked_by = clock(), actor.name
        await record_audit(
            session,
            actor=actor,
            action="billing.platform_secret_revoked",
            target_type="billing_platform",
            target_id=platform_id,
            detail={"secret_id": str(secret_id)},
            clock=clock,
        )
        await session.commit()
    return row


# -- accounts, subscriptions, overrides, flex (staff) --------------------------------------------------------------
async def get_account(session: AsyncSession, platform_id: uuid.UUID, external_id: str) -> BillingAccount:
    account = await _find_account(session, platform_id, external_id)
    if account is None:
        raise BillingAccountNotFound(f"platform {platform_id} has no account {external_id!r}", field="external_id")
    return account


async def ensure_account(
    session: AsyncSession,
    *,
    platform_id: uuid.UUID,
    external_id: str,
    on_default_plan: bool = True,
    clock: Clock = utcnow,
) -> BillingAccount:
    """The account, created if the platform has not sent it yet: on the default plan, unless staff are about to
    subscribe it to a plan of their choosing (``on_default_plan=False``)."""
    platform = await get_platform(session, platform_id)
    account = await _find_account(session, platform_id, external_id)
    if account is None:
        account = await _create_on_first_sight(
            session, platform_snapshot(platform), external_id, clock(), on_default_plan=on_default_plan
        )
    return account


async def list_accounts(
    session: AsyncSession, *, platform_id: uuid.UUID, limit: int, offset: int
) -> list[BillingAccount]:
    await get_platform(session, platform_id)
    rows = await session.scalars(
        select(BillingAccount)
        .where(BillingAccount.platform_id == platform_id)
        .order_by(BillingAccount.created_at, BillingAccount.id)
        .limit(limit)
        .offset(offset)
    )
    return list(rows.all())


async def create_subscription(
    session: AsyncSession,
    *,
    actor: Actor,
    platform_id: uuid.UUID,
    external_id: str,
    plan: str,
    trial_days: int | None = None,
    anchor: datetime | None = None,
    test_clock_id: uuid.UUID | None = None,
    clock: Clock = utcnow,
) -> SubscriptionView:
    """Subscribe the account (created if new). ``test_clock_id``: attach the account to that test clock first, so
    the subscription starts on the clock's time (as Stripe creates a test customer on its clock)."""
    plan_row = await _plan_by_ref(session, plan, "plan")
    if test_clock_id is not None:
        await get_clock(session, test_clock_id)  # an unknown clock is refused before the account is created
    account = await ensure_account(
        session, platform_id=platform_id, external_id=external_id, on_default_plan=False, clock=clock
    )
    if test_clock_id is not None:
        await attach_account(session, account_id=account.id, clock_id=test_clock_id, now=clock())
    now = (await account_clock(session, account.id, clock))()  # a test clock's accounts start on its time
    subscription = _new_subscription(account.id, plan_row, now, trial_days=trial_days, anchor=anchor)
    session.add(subscription)
    await session.flush()
    await record_audit(
        session,
        actor=actor,
        action="billing.subscription_created",
        target_type="billing_account",
        target_id=account.id,
        detail={"subscription_id": str(subscription.id), "plan": plan_row.code, "status": subscription.status},
        clock=clock,
    )
    await session.commit()
    return SubscriptionView(subscription, plan_row.code, billing_terms(plan_row.billing))


async def list_subscriptions(
    session: AsyncSession, *, account_id: uuid.UUID, status: str | None = None
) -> list[SubscriptionView]:
    query = (
        select(Subscription, Plan)
        .join(Plan, Plan.id == Subscription.plan_id)
        .where(Subscription.account_id == account_id)
        .order_by(Subscription.anchor_at, Subscription.id)
    )
    if status is not None:
        query = query.where(Subscription.status == status)
    return [
        SubscriptionView(sub, plan.code, billing_terms(plan.billing))
        for sub, plan in (await session.execute(query)).all()
    ]


async def set_override(
    session: AsyncSession,
    *,
    actor: Actor,
    platform_id: uuid.UUID,
    external_id: str,
    key: str,
    limit: int | None,
    clock: Clock = utcnow,
) -> LimitOverride:
    account = await ensure_account(session, platform_id=platform_id, external_id=external_id, clock=clock)
    now = clock()
    row = await session.get(LimitOverride, (account.id, key))
    if row is None:
        row = LimitOverride(account_id=account.id, key=key, limit=limit, updated_at=now, updated_by=actor.name)
        session.add(row)
    else:
        row.limit, row.updated_at, row.updated_by = limit, now, actor.name
    await record_audit(
        session,
        actor=actor,
        action="billing.override_set",
        target_type="billing_account",
        target_id=account.id,
        detail={"key": key, "limit": limit},
        clock=clock,
    )
    await session.commit()
    return row


async def clear_override(
    session: AsyncSession, *, actor: Actor, platform_id: uuid.UUID, external_id: str, key: str, clock: Clock = utcnow
) -> bool:
    account = await get_account(session, platform_id, external_id)
    row = await session.get(LimitOverride, (account.id, key))
    if row is None:
        return False
    await session.delete(row)
    await record_audit(
        session,
        actor=actor,
        action="billing.override_cleared",
        target_type="billing_account",
        target_id=account.id,
        detail={"key": key},
        clock=clock,
    )
    await session.commit()
    return True


async def list_overrides(session: AsyncSession, account_id: uuid.UUID) -> list[LimitOverride]:
    rows = await session.scalars(
        select(LimitOverride).where(LimitOverride.account_id == account_id).order_by(LimitOverride.key)
    )
    return list(rows.all())


async def set_flex(
    session: AsyncSession,
    *,
    actor: Actor,
    platform_id: uuid.UUID,
    external_id: str,
    enabled: bool,
    clock: Clock = utcnow,
) -> BillingAccount:
    account = await ensure_account(session, platform_id=platform_id, external_id=external_id, clock=clock)
    if account.flex_enabled != enabled:
        account.flex_enabled = enabled
        await record_audit(
            session,
            actor=actor,
            action="billing.flex_enabled" if enabled else "billing.flex_disabled",
            target_type="billing_account",
            target_id=account.id,
            detail={"external_id": external_id},
            clock=clock,
        )
        await session.commit()
    return account


def active_statuses() -> frozenset[str]:
    return frozenset(status.value for status in ACTIVE_STATUSES)


# -- the console's lists: keyset pages, no counts (their cost does not grow with the table) ----------------------
@dataclass(frozen=True)
class AccountCursor:
    created_at: datetime
    id: uuid.UUID


async def page_accounts(
    session: AsyncSession, *, limit: int, after: AccountCursor | None = None, platform_id: uuid.UUID | None = None
) -> tuple[list[BillingAccount], AccountCursor | None]:
    """Billing accounts of every platform (or one), oldest first, by the (created_at, id) index."""
    conditions = []
    if platform_id is not None:
        conditions.append(BillingAccount.platform_id == platform_id)
    if after is not None:
        conditions.append(
            (BillingAccount.created_at > after.created_at)
            | ((BillingAccount.created_at == after.created_at) & (BillingAccount.id > after.id))
        )
    rows = list(
        (
            await session.scalars(
                select(BillingAccount)
                .where(*conditions)
                .order_by(BillingAccount.created_at, BillingAccount.id)
                .limit(limit + 1)
            )
        ).all()
    )
    page = rows[:limit]
    cursor = AccountCursor(page[-1].created_at, page[-1].id) if len(rows) > limit else None
    return page, cursor


async def accounts_with_subscription_status(
    session: AsyncSession, *, status: SubscriptionStatus, limit: int
) -> list[tuple[BillingAccount, Subscription]]:
    """Accounts with a subscription in ``status`` (e.g. past due), by the subscriptions' status index."""
    rows = await session.execute(
        select(BillingAccount, Subscription)
        .join(Subscription, Subscription.account_id == BillingAccount.id)
        .where(Subscription.status == status.value)
        .order_by(Subscription.updated_at, Subscription.id)
        .limit(limit)
    )
    return [(account, subscription) for account, subscription in rows.tuples().all()]


async def change_plan(
    session: AsyncSession,
    *,
    actor: Actor,
    platform_id: uuid.UUID,
    external_id: str,
    plan: str,
    clock: Clock = utcnow,
    state: BillingState | None = None,
) -> lifecycle.SubscriptionState | None:
    """Staff's (and the customer portal's) plan change for an account: the account's latest live subscription
    changes plan by the lifecycle's rule (upgrade now, prorated; downgrade at the period end). An account with none
    is subscribed to ``plan`` (None is returned then: there is no change to show)."""
    account = await session.scalar(
        select(BillingAccount).where(
            BillingAccount.platform_id == platform_id, BillingAccount.external_id == external_id
        )
    )
    live = None
    if account is not None:
        live = await session.scalar(
            select(Subscription.id)
            .where(Subscription.account_id == account.id, Subscription.status != SubscriptionStatus.CANCELED.value)
            .order_by(Subscription.created_at.desc(), Subscription.id.desc())
            .limit(1)
        )
    if live is None:
        await create_subscription(
            session, actor=actor, platform_id=platform_id, external_id=external_id, plan=plan, clock=clock
        )
        return None
    return await lifecycle.change_plan(
        session, actor=actor, platform_id=platform_id, subscription_id=live, plan=plan, clock=clock, state=state
    )
