"""Portal links and sessions, and the reads each portal page makes through the domains' own services.

A **link** is made by a platform (for one of its billing accounts) or by vendor staff (for a billing account or a
customer) with the customer's role. Its token works once, for ``LINK_TTL``, to start a **session**: a server-side
row (so any replica serves it) found by the digest of the session cookie. Redeeming is one conditional UPDATE, so
two concurrent redemptions of one link start one session, on SQLite and PostgreSQL alike.

The page reads below load what a page shows by calling the billing, licenses, deployments and offline services:
the portal runs no query of other domains' tables and repeats none of their rules.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.audit import record_audit
from license_server.auth.hashing import SecretHasher
from license_server.auth.tokens import Actor, Role
from license_server.billing.accounts import service as accounts
from license_server.billing.accounts.models import BillingAccount
from license_server.billing.accounts.snapshots import AccountSnapshot
from license_server.billing.clocks.service import frozen_now_of
from license_server.billing.credits import service as credits
from license_server.billing.invoices import rendering as invoice_rendering
from license_server.billing.invoices import service as invoice_service
from license_server.billing.invoices.calculation import display_status
from license_server.billing.periods import Period, period_containing
from license_server.billing.plans import service as plans
from license_server.billing.plans.terms import billing_terms
from license_server.billing.usage import service as usage
from license_server.billing.usage.breakdown import BreakdownBy, usage_breakdown
from license_server.clock import Clock, as_utc, utcnow
from license_server.console.portal.interfaces import InvoiceSummary, PlanChange
from license_server.console.portal.models import PortalLink, PortalRole, PortalSession
from license_server.console.portal.views import Overview, PlanComparison, UsageSections, overview, plan_comparison
from license_server.console.portal.views import usage_sections as usage_sections_of
from license_server.deployments import service as deployments
from license_server.deployments.schemas import ActivationOut
from license_server.deployments.views import list_activations
from license_server.errors import (
    AuthenticationRequired,
    LicenseKeyNotFound,
    LicenseNotFound,
    NotFound,
    ValidationFailed,
)
from license_server.licenses import service as licenses
from license_server.licenses.service import LicenseView
from license_server.offline import files
from license_server.offline import service as offline
from license_server.offline.service import IssuedLicenseFile
from license_server.runtime import Runtime

LINK_PREFIX = "lspl_"
SESSION_PREFIX = "lsps_"
LINK_TTL = timedelta(minutes=10)
SESSION_TTL = timedelta(hours=8)
START_PATH = "/portal/start"
MAX_TOKEN_LENGTH = 128


class PortalPermission(StrEnum):
    VIEW_BILLING = "view_billing"  # Overview, Usage, Credits, Invoices, Plans
    CHANGE_BILLING = "change_billing"  # change plans, buy credits
    VIEW_LICENSES = "view_licenses"  # a self-hosted customer's licenses, activations and check-ins
    MANAGE_LICENSES = "manage_licenses"  # download license documents, answer offline activation requests


# Seed 002: only Owner and Admin, and anyone with billing:read, see billing; Members see no billing pages.
PORTAL_ROLE_PERMISSIONS: dict[PortalRole, frozenset[PortalPermission]] = {
    PortalRole.OWNER: frozenset(PortalPermission),
    PortalRole.ADMIN: frozenset(PortalPermission),
    PortalRole.BILLING_READ: frozenset({PortalPermission.VIEW_BILLING, PortalPermission.VIEW_LICENSES}),
    PortalRole.MEMBER: frozenset({PortalPermission.VIEW_LICENSES}),
}

# The billing pages are a billing account's; the license pages a customer's.
ACCOUNT_PERMISSIONS = frozenset({PortalPermission.VIEW_BILLING, PortalPermission.CHANGE_BILLING})


@dataclass(frozen=True)
class PortalVisitor:
    """Who holds a portal session, and for what."""

    session_id: uuid.UUID
    role: PortalRole
    account_id: uuid.UUID | None
    customer_id: uuid.UUID | None
    payment_url: str | None
    expires_at: datetime

    def can(self, permission: PortalPermission) -> bool:
        return permission in PORTAL_ROLE_PERMISSIONS[self.role]

    def has_pages_of(self, permission: PortalPermission) -> bool:
        """Whether this session's subject has the pages ``permission`` guards (a customer has no billing pages)."""
        return (self.account_id if permission in ACCOUNT_PERMISSIONS else self.customer_id) is not None

    @property
    def actor(self) -> Actor:
        """How the visitor's writes appear in the audit log. Answering an offline request is an issuer's act."""
        return Actor(name=f"portal:{self.session_id}", role=Role.ISSUER)


@dataclass(frozen=True)
class CreatedLink:
    link: PortalLink
    token: str  # shown once, never stored

    @property
    def path(self) -> str:
        return f"{START_PATH}/{self.token}"


def generate_link_token() -> str:
    return LINK_PREFIX + secrets.token_urlsafe(32)


def _checked_payment_url(payment_url: str | None) -> str | None:
    """Only an https page (or http on a loopback address, for development) may be linked from the banner."""
    if payment_url is None:
        return None
    if not (payment_url.startswith(("https://", "http://127.0.0.1", "http://localhost"))):
        raise ValidationFailed("payment_url must be an https URL", field="payment_url")
    return payment_url


async def create_link(
    session: AsyncSession,
    *,
    hasher: SecretHasher,
    actor: Actor,
    role: PortalRole,
    account_id: uuid.UUID | None = None,
    customer_id: uuid.UUID | None = None,
    payment_url: str | None = None,
    clock: Clock = utcnow,
) -> CreatedLink:
    """A one-time link for one billing account or one customer. Like an admin token, the secret exists only in the
    answer: a retried request makes a second link, and the unused one expires on its own."""
    if (account_id is None) == (customer_id is None):
        raise ValidationFailed("a portal link is for one billing account or one customer", field="subject")
    if customer_id is not None:
        await licenses.get_customer(session, customer_id)  # 404 customer_not_found before anything is written
    now = clock()
    token = generate_link_token()
    link = PortalLink(
        token_hash=hasher.digest(token),
        account_id=account_id,
        customer_id=customer_id,
        role=role.value,
        payment_url=_checked_payment_url(payment_url),
        created_by=actor.name,
        created_at=now,
        expires_at=now + LINK_TTL,
        used_at=None,
    )
    session.add(link)
    await session.flush()
    await record_audit(
        session,
        actor=actor,
        action="portal.link_created",
        target_type="billing_account" if account_id is not None else "customer",
        target_id=account_id or customer_id or link.id,
        detail={"link_id": str(link.id), "role": role.value, "expires_at": link.expires_at.isoformat()},
        clock=lambda: now,
    )
    await session.commit()
    return CreatedLink(link, token)


def link_refusal(link: PortalLink | None, now: datetime) -> AuthenticationRequired | None:
    """Why a link cannot start a session now, in the order a visitor can act on: unknown, used, expired."""
    if link is None:
        return AuthenticationRequired("this portal link is not valid; ask for a new one", code="portal_link_invalid")
    if link.used_at is not None:
        return AuthenticationRequired(
            "this portal link was already used; a link opens the portal once — ask for a new one",
            code="portal_link_used",
        )
    if link.expires_at <= now:
        return AuthenticationRequired("this portal link has expired; ask for a new one", code="portal_link_expired")
    return None


def _well_formed(token: str | None, prefix: str) -> bool:
    return token is not None and token.startswith(prefix) and len(token) <= MAX_TOKEN_LENGTH


async def find_link(session: AsyncSession, *, hasher: SecretHasher, token: str) -> PortalLink | None:
    if not _well_formed(token, LINK_PREFIX):
        return None
    return await session.scalar(select(PortalLink).where(PortalLink.token_hash == hasher.digest(token)))


async def check_link(session: AsyncSession, *, hasher: SecretHasher, token: str, clock: Clock = utcnow) -> PortalLink:
    """The link, if it could start a session now (read-only: showing the start page spends nothing)."""
    link = await find_link(session, hasher=hasher, token=token)
    refusal = link_refusal(link, clock())
    if refusal is not None:
        raise refusal
    assert link is not None
    return link


@dataclass(frozen=True)
class StartedSession:
    cookie: str  # the session cookie's value, set once and never stored
    visitor: PortalVisitor


async def redeem_link(
    session: AsyncSession, *, hasher: SecretHasher, token: str, clock: Clock = utcnow
) -> StartedSession:
    """Spend the link and start a session. The spending UPDATE matches only an unused, unexpired link, so of two
    concurrent redemptions exactly one starts a session; the other is told the link was used."""
    now = clock()
    link = await find_link(session, hasher=hasher, token=token)
    refusal = link_refusal(link, now)
    if refusal is not None:
        raise refusal
    assert link is not None
    spent = await session.execute(
        update(PortalLink)
        .where(PortalLink.id == link.id, PortalLink.used_at.is_(None), PortalLink.expires_at > now)
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        raise AuthenticationRequired(
            "this portal link was already used; a link opens the portal once — ask for a new one",
            code="portal_link_used",
        )
    cookie = SESSION_PREFIX + secrets.token_urlsafe(32)
    row = PortalSession(
        token_hash=hasher.digest(cookie), link_id=link.id, created_at=now, expires_at=now + SESSION_TTL, ended_at=None
    )
    session.add(row)
    await session.flush()
    visitor = _visitor(row, link)
    await session.commit()
    return StartedSession(cookie, visitor)


def _visitor(row: PortalSession, link: PortalLink) -> PortalVisitor:
    return PortalVisitor(
        session_id=row.id,
        role=PortalRole(link.role),
        account_id=link.account_id,
        customer_id=link.customer_id,
        payment_url=link.payment_url,
        expires_at=row.expires_at,
    )


def session_required(detail: str) -> AuthenticationRequired:
    return AuthenticationRequired(detail, code="portal_session_required")


async def visitor_of(
    session: AsyncSession, *, hasher: SecretHasher, cookie: str | None, clock: Clock = utcnow
) -> PortalVisitor:
    """The visitor a session cookie stands for. Missing, unknown, ended and expired sessions are refused alike."""
    if not _well_formed(cookie, SESSION_PREFIX):
        raise session_required("open the portal from the link you were given")
    assert cookie is not None
    row = await session.scalar(select(PortalSession).where(PortalSession.token_hash == hasher.digest(cookie)))
    if row is None or row.ended_at is not None or row.expires_at <= clock():
        raise session_required("your portal session has ended; open the portal again from a new link")
    return _visitor(row, row.link)


async def end_session(session: AsyncSession, *, visitor: PortalVisitor, clock: Clock = utcnow) -> None:
    """Sign out: the session row is ended (every replica refuses its cookie from now on)."""
    await session.execute(
        update(PortalSession)
        .where(PortalSession.id == visitor.session_id, PortalSession.ended_at.is_(None))
        .values(ended_at=clock())
    )
    await session.commit()


# -- billing pages ------------------------------------------------------------------------------------------------
def account_id_of(visitor: PortalVisitor) -> uuid.UUID:
    if visitor.account_id is None:
        raise NotFound("this portal session is for licenses, not a billing account")
    return visitor.account_id


async def account_snapshot(session: AsyncSession, visitor: PortalVisitor, now: datetime) -> AccountSnapshot:
    """The account's snapshot as the platform API loads it (the effective limits' every input)."""
    account = await session.get(BillingAccount, account_id_of(visitor))
    if account is None:  # deleted since the link was made
        raise NotFound("this billing account no longer exists", code="billing_account_not_found")
    platform = accounts.platform_snapshot(await accounts.get_platform(session, account.platform_id))
    return await accounts.load_snapshot(session, platform, account, test_now=await frozen_now_of(session, account.id))


@dataclass(frozen=True)
class OverviewPage:
    snapshot: AccountSnapshot
    overview: Overview
    plan_name: str | None


async def overview_page(session: AsyncSession, visitor: PortalVisitor, now: datetime) -> OverviewPage:
    snapshot = await account_snapshot(session, visitor, now)
    now = snapshot.test_now or now  # an account on a test clock lives on its time
    anchor = snapshot.anchor
    next_billing = period_containing(now, anchor).end if anchor is not None else None
    page = overview(snapshot, now, next_billing)
    names = {plan.code: plan.name for plan in await plans.list_billing_plans(session)}
    return OverviewPage(snapshot, page, names.get(page.plan.plan_code) if page.plan else None)


@dataclass(frozen=True)
class UsagePage:
    report: dict[str, Any]
    sections: UsageSections
    chart: list[tuple[str, Decimal]]
    chart_by: BreakdownBy


async def usage_page(session: AsyncSession, visitor: PortalVisitor, now: datetime, by: BreakdownBy) -> UsagePage:
    """Seed 004's Usage tab from the same limits report the platform API serves, and the period's breakdown."""
    snapshot = await account_snapshot(session, visitor, now)
    now = snapshot.test_now or now  # an account on a test clock lives on its time
    report = await usage.limits_report(session, snapshot, now)
    start, end = datetime.fromisoformat(report["period_start"]), datetime.fromisoformat(report["period_end"])
    breakdown = await usage_breakdown(session, account_id=snapshot.account_id, period=Period(start, end))
    chart = breakdown.chart(by)
    return UsagePage(report, usage_sections_of(report), chart, by)


@dataclass(frozen=True)
class CreditsPage:
    balance: credits.CreditBalance
    movements: list[credits.MovementRecord]
    total: int


async def credits_page(
    session: AsyncSession, visitor: PortalVisitor, *, limit: int, offset: int, clock: Clock
) -> CreditsPage:
    account_id = account_id_of(visitor)
    balance = await credits.credit_balance(session, account_id=account_id, clock=clock)
    movements, total = await credits.list_movements(session, account_id=account_id, limit=limit, offset=offset)
    return CreditsPage(balance, movements, total)


async def plans_page(session: AsyncSession, visitor: PortalVisitor, now: datetime) -> PlanComparison:
    snapshot = await account_snapshot(session, visitor, now)
    now = snapshot.test_now or now  # an account on a test clock lives on its time
    catalogue = [(p.code, p.name, billing_terms(p.billing)) for p in await plans.list_billing_plans(session)]
    return plan_comparison(catalogue, snapshot.primary.plan_code if snapshot.primary else None)


# -- license pages ------------------------------------------------------------------------------------------------
def customer_id_of(visitor: PortalVisitor) -> uuid.UUID:
    if visitor.customer_id is None:
        raise NotFound("this portal session is for a billing account, not licenses")
    return visitor.customer_id


async def customer_licenses(
    session: AsyncSession, visitor: PortalVisitor, *, limit: int, offset: int, clock: Clock
) -> tuple[list[LicenseView], int]:
    return await licenses.list_licenses(
        session, customer_id=customer_id_of(visitor), limit=limit, offset=offset, clock=clock
    )


async def customer_license(
    session: AsyncSession, visitor: PortalVisitor, license_id: uuid.UUID, *, clock: Clock
) -> tuple[LicenseView, list[ActivationOut]]:
    """One of the customer's licenses with its activations. Another customer's license is not found (404), the same
    answer as a license that does not exist, so ids cannot be probed."""
    view = await licenses.get_license(session, license_id, clock=clock)
    if view.license.customer_id != customer_id_of(visitor):
        raise LicenseNotFound(f"no license with id {license_id}", field="license_id")
    activations, _ = await list_activations(session, license_id=license_id, state=None, limit=500)
    return view, activations


async def license_document(
    session: AsyncSession, runtime: Runtime, visitor: PortalVisitor, license_id: uuid.UUID
) -> str:
    await customer_license(session, visitor, license_id, clock=runtime.clock)
    return await deployments.license_document(
        session,
        signer=runtime.signer,
        issuer=runtime.settings.issuer,
        license_id=license_id,
        ttl=runtime.settings.document_ttl,
        clock=runtime.clock,
    )


async def answer_offline_request(
    session: AsyncSession, runtime: Runtime, visitor: PortalVisitor, request: bytes
) -> IssuedLicenseFile:
    """The license file for an air-gapped install's activation request, for one of the visitor's own licenses only
    (the offline service answers any key; the portal first checks whose license the request names)."""
    customer_id = customer_id_of(visitor)
    try:
        parsed = files.parse_activation_request(request, now=runtime.clock())
    except files.FileError:
        # A file the offline service refuses anyway: let it refuse it, with its own reason, before any write.
        return await offline.respond(
            session, runtime=runtime, actor=visitor.actor, request=request, clock=runtime.clock
        )
    license = await deployments.license_by_key(session, runtime, parsed.license_key)
    if license is None or license.customer_id != customer_id:
        # Another customer's key reads as an unknown one: the portal does not confirm that a key exists.
        raise LicenseKeyNotFound("no license of yours matches the request's key", field="license_key")
    return await offline.respond(session, runtime=runtime, actor=visitor.actor, request=request, clock=runtime.clock)


# -- invoices (billing/invoices behind the portal's InvoiceSource interface) --------------------------------------
@dataclass(frozen=True)
class AccountInvoices:
    """The portal's ``InvoiceSource`` over ``billing/invoices``: the list and the cached PDFs, confined to the
    visitor's account. The status shown (past due or not) is billing/invoices' rule, read at the runtime's clock."""

    runtime: Runtime
    limit: int = 100  # the page shows the newest ones; an account has one invoice a month

    async def list_invoices(self, session: AsyncSession, *, account_id: uuid.UUID) -> list[InvoiceSummary]:
        now = self.runtime.clock()
        rows = await invoice_service.list_invoices(session, account_id=account_id, limit=self.limit)
        return [
            InvoiceSummary(
                id=invoice.id,
                number=invoice.number,
                period_start=invoice.period_start,
                period_end=invoice.period_end,
                total=invoice.total,
                currency=invoice.currency,
                status=display_status(invoice.status, invoice.due_at, now),
                due_at=invoice.due_at,
            )
            for invoice in rows
        ]

    async def invoice_pdf(self, session: AsyncSession, *, account_id: uuid.UUID, invoice_id: uuid.UUID) -> bytes:
        # Another account's invoice id reads as not found (get_invoice confines it to the account).
        view = await invoice_service.get_invoice(session, invoice_id=invoice_id, account_id=account_id)
        _, content = await invoice_rendering.invoice_pdf(
            session,
            number=view.invoice.number,
            account_id=account_id,
            issuer=self.runtime.settings.invoice_issuer,
            now=self.runtime.clock(),
        )
        return content


# -- plan changes (the subscriptions lifecycle behind the portal's PlanChanger interface) ---------------------------
@dataclass(frozen=True)
class AccountPlanChanges:
    """The portal's ``PlanChanger`` over the lifecycle's plan change (``accounts.change_plan`` -> the subscriptions
    service): an upgrade at once, prorated; a downgrade scheduled for the period's end. Asking again for what is
    already so changes nothing, so the form's idempotency key needs no storage of its own."""

    runtime: Runtime

    async def change_plan(
        self, session: AsyncSession, *, actor: Actor, account_id: uuid.UUID, plan_code: str, idempotency_key: str
    ) -> PlanChange:
        account = await session.get(BillingAccount, account_id)
        if account is None:
            raise NotFound("this billing account no longer exists", code="billing_account_not_found")
        changed = await accounts.change_plan(
            session,
            actor=actor,
            platform_id=account.platform_id,
            external_id=account.external_id,
            plan=plan_code,
            clock=self.runtime.clock,
            state=self.runtime.billing,
        )
        if changed is None:  # the account had no subscription: it starts on the plan now
            return PlanChange(plan_code, self.runtime.clock(), immediate=True)
        if changed.pending_plan == plan_code:  # a downgrade: it waits for the period's end
            end = changed.view.subscription.current_period_end
            return PlanChange(plan_code, as_utc(end) if end is not None else changed.now, immediate=False)
        return PlanChange(plan_code, changed.now, immediate=True)


DIFY_ACTOR = Actor(name="dify:billing-api", role=Role.BILLING)  # who made a link Dify's "invoices" button asked for


@dataclass(frozen=True)
class InvoicesPageLinks:
    """Dify's billing API's ``/invoices`` answer: a one-time link to the account's portal, read-only for billing
    (Dify shows the button to a workspace's owner and admins; seeing invoices needs no more than billing:read)."""

    runtime: Runtime

    async def __call__(self, account_id: uuid.UUID) -> str:
        async with self.runtime.session_factory() as session:
            created = await create_link(
                session,
                hasher=self.runtime.hasher,
                actor=DIFY_ACTOR,
                role=PortalRole.BILLING_READ,
                account_id=account_id,
                clock=self.runtime.clock,
            )
        return created.path
