"""Dify's billing routes over the billing core: each answer is built from the core's snapshot, limits report and
usage writes, renamed by ``mapping``. Nothing here decides a limit, a period or an idempotency rule of its own.

The two hot reads (``/subscription/info`` and ``/quota/info``, four calls per Dify console page) are served from
the core's caches (the account snapshot and the limits report, a few seconds each, dropped by this process's own
writes) and their serialised bodies are kept beside them, valid for as long as the very objects they were built
from are what the core's caches hand out: no second staleness window, no second invalidation path.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.billing.accounts import service as accounts
from license_server.billing.accounts.models import BillingAccount
from license_server.billing.accounts.snapshots import AccountSnapshot, PlatformSnapshot
from license_server.billing.invoices.models import Invoice, InvoiceStatus
from license_server.billing.limits import EffectiveLimit, effective_limit
from license_server.billing.payments import service as payments
from license_server.billing.payments.providers import PaymentProvider
from license_server.billing.state import BillingState, CachedReport
from license_server.billing.usage import service as usage
from license_server.billing.usage.models import ReservationStatus, UsageRecord
from license_server.config import DifyBillingSettings
from license_server.errors import InvalidPlatformSecret, LicenseServerError, UsageRecordNotFound, ValidationFailed
from license_server.inner_billing import mapping
from license_server.inner_billing.mapping import Counter, DifyPlan, Gauge

# Refusals Dify must see as "quota exhausted" (a 200 with an empty reservation_id, its only way to say so): the
# limit is reached, or the subscription is past due or paused (runs paused, nothing lost; the codes subscriptions
# raise for those statuses).
EXHAUSTED_CODES = frozenset({"subscription_limit_reached", "subscription_past_due", "subscription_paused"})
QUOTA_FIELDS = ("trigger_event", "api_rate_limit")
GAUGE_FIELDS = ("members", "apps", "vector_space", "documents_upload_quota", "annotation_quota_limit")
MAX_CACHED_BODIES = 100_000
# The path of a one-time link to a billing account's own invoices page (the customer portal's, made by the app
# factory: the portal sits above this package, so it is handed in rather than imported).
InvoicesPageLink = Callable[[uuid.UUID], Awaitable[str]]


@dataclass(frozen=True)
class _Body:
    snapshot: AccountSnapshot
    report: CachedReport
    body: bytes


@dataclass
class InnerBilling:
    """What the Dify billing routes hold: the core's billing state and the configured names."""

    state: BillingState
    config: DifyBillingSettings
    # The server's own answers where it has them; without them the links are the configured templates.
    payments: PaymentProvider | None = None  # Stripe, when configured: checkout links for open invoices
    invoices_page: InvoicesPageLink | None = None  # the customer portal's Invoices page, when the portal is mounted
    names: dict[str, str] = field(init=False)
    _info_bodies: dict[uuid.UUID, _Body] = field(default_factory=dict, init=False)
    _quota_bodies: dict[uuid.UUID, _Body] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.names = mapping.names_by_code(self.config)

    def plan_of(self, snapshot: AccountSnapshot, now: datetime) -> DifyPlan:
        return mapping.dify_plan(snapshot.subscriptions, now, self.names, self.config.unmapped_plan)


# -- who is calling ------------------------------------------------------------------------------------------------
async def authenticate(billing: InnerBilling, secret: str | None, *, address: str | None) -> PlatformSnapshot:
    """The platform whose secret Dify sends as ``Billing-Api-Secret-Key``: the core's platform-secret check, with its
    failed-auth throttle (the platform-secret kind: this header carries a platform secret)."""
    try:
        return await accounts.authenticate_platform(billing.state, secret, address=address)
    except InvalidPlatformSecret:
        if secret:
            raise
        raise InvalidPlatformSecret("send Billing-Api-Secret-Key: <platform secret>") from None


async def _account(billing: InnerBilling, platform: PlatformSnapshot, tenant_id: str) -> AccountSnapshot:
    """A Dify workspace's account; one seen for the first time is created on the platform's default plan."""
    return await accounts.account_snapshot(billing.state, platform, tenant_id)


def _quota_key(billing: InnerBilling, feature_key: str) -> str:
    if feature_key not in QUOTA_FIELDS:
        raise ValidationFailed(f"feature_key must be one of {', '.join(QUOTA_FIELDS)}", field="feature_key")
    return billing.config.keys[feature_key]


# -- reads ---------------------------------------------------------------------------------------------------------
def _entries(report: CachedReport) -> dict[str, dict[str, Any]]:
    return {entry["key"]: entry for entry in report.report["limits"]}


def _period_end(report: CachedReport) -> datetime:
    return datetime.fromisoformat(report.report["period_end"])


def _counter(snapshot: AccountSnapshot, entries: dict[str, dict[str, Any]], key: str) -> Counter:
    entry = entries.get(key, {})
    return Counter(int(entry.get("used", 0)) + int(entry.get("held", 0)), effective_limit(snapshot.facts, key).limit)


def _cached_body(
    cache: dict[uuid.UUID, _Body],
    snapshot: AccountSnapshot,
    report: CachedReport,
    build: Callable[[], dict[str, Any]],
) -> bytes:
    cached = cache.get(snapshot.account_id)
    if cached is not None and cached.snapshot is snapshot and cached.report is report:
        return cached.body
    body = json.dumps(build(), separators=(",", ":")).encode()
    if len(cache) >= MAX_CACHED_BODIES:
        cache.clear()
    cache[snapshot.account_id] = _Body(snapshot, report, body)
    return body


async def subscription_info(billing: InnerBilling, platform: PlatformSnapshot, tenant_id: str) -> bytes:
    """``GET /subscription/info``, serialised (contract §3.1)."""
    snapshot = await _account(billing, platform, tenant_id)
    report = await usage.cached_limits_report(billing.state, snapshot)

    def build() -> dict[str, Any]:
        now = billing.state.clock()
        plan = billing.plan_of(snapshot, now)
        entries = _entries(report)
        gauges = {}
        for name in GAUGE_FIELDS:
            key = billing.config.keys[name]
            gauges[name] = Gauge(int(entries.get(key, {}).get("used", 0)), effective_limit(snapshot.facts, key).limit)
        terms = plan.view.terms if plan.view is not None else snapshot.default_plan_terms
        return mapping.subscription_info(
            enabled=platform.billing_enabled,
            plan=plan,
            gauges=gauges,
            features=terms.features if terms is not None else {},
            config=billing.config,
            knowledge_limit=_knowledge_limit(billing, snapshot, now),
            period_end=_period_end(report),
        )

    return _cached_body(billing._info_bodies, snapshot, report, build)


def _knowledge_limit(billing: InnerBilling, snapshot: AccountSnapshot, now: datetime) -> EffectiveLimit:
    active = [view.terms for view in snapshot.subscriptions if view.subscription.is_active(now)]
    return mapping.rate_limit(snapshot.facts, active, billing.config.knowledge_rate_limit_key)


def _quota_info(billing: InnerBilling, snapshot: AccountSnapshot, report: CachedReport) -> dict[str, Any]:
    entries = _entries(report)
    period_end = _period_end(report)
    return {
        name: mapping.quota_entry(_counter(snapshot, entries, billing.config.keys[name]), period_end)
        for name in QUOTA_FIELDS
    }


async def quota_info(billing: InnerBilling, platform: PlatformSnapshot, tenant_id: str) -> bytes:
    """``GET /quota/info`` (and the deprecated ``/tenant-feature-usage/info``), serialised (contract §3.2)."""
    snapshot = await _account(billing, platform, tenant_id)
    report = await usage.cached_limits_report(billing.state, snapshot)
    return _cached_body(billing._quota_bodies, snapshot, report, lambda: _quota_info(billing, snapshot, report))


async def knowledge_rate_limit(billing: InnerBilling, platform: PlatformSnapshot, tenant_id: str) -> dict[str, Any]:
    """``GET /subscription/knowledge-rate-limit``: JSON numbers (Dify compares them raw), contract §3.6."""
    snapshot = await _account(billing, platform, tenant_id)
    now = billing.state.clock()
    return {
        "limit": mapping.knowledge_rate_limit(_knowledge_limit(billing, snapshot, now)),
        "subscription_plan": billing.plan_of(snapshot, now).name,
    }


async def plan_batch(billing: InnerBilling, platform: PlatformSnapshot, tenant_ids: Sequence[str]) -> dict[str, Any]:
    """``POST /subscription/plan/batch``: each workspace's plan name and paid-until moment (contract §3.7)."""
    now = billing.state.clock()
    data: dict[str, dict[str, Any]] = {}
    for tenant_id in dict.fromkeys(tenant_ids):
        snapshot = await _account(billing, platform, tenant_id)
        plan = billing.plan_of(snapshot, now)
        data[tenant_id] = {
            "plan": plan.name,
            "expiration_date": mapping.expiration_date(
                plan, snapshot.subscriptions, now, billing.names, billing.config.unmapped_plan
            ),
        }
    return {"data": data}


# -- reserve / commit / release ------------------------------------------------------------------------------------
async def _available(billing: InnerBilling, snapshot: AccountSnapshot, key: str) -> int:
    report = await usage.cached_limits_report(billing.state, snapshot)
    counter = _counter(snapshot, _entries(report), key)
    return mapping.available(counter.limit, counter.used)


async def reserve(
    billing: InnerBilling, platform: PlatformSnapshot, *, tenant_id: str, feature_key: str, request_id: str, amount: int
) -> dict[str, Any]:
    """``POST /quota/reserve`` (contract §3.3). The reservation is named by Dify's ``request_id``, which is also the
    ``reservation_id`` answered (so a retried reserve answers the same id). Exhaustion is a 200 with an empty
    ``reservation_id``: Dify has no other way to hear it."""
    key = _quota_key(billing, feature_key)
    snapshot = await _account(billing, platform, tenant_id)
    try:
        held = await usage.reserve(
            billing.state,
            snapshot,
            key=key,
            amount=amount,
            request_id=request_id,
            ttl_seconds=billing.config.reservation_ttl_seconds,
        )
    except LicenseServerError as exc:
        if exc.code not in EXHAUSTED_CODES:
            raise
        return {"reservation_id": "", "available": await _available(billing, snapshot, key), "reserved": 0}
    if "used" in held:  # a new hold: the core answered what is used and held with it
        left = mapping.available(effective_limit(snapshot.facts, key).limit, int(held["used"]))
    else:  # a replay answers the first reservation's body, without the counts
        left = await _available(billing, snapshot, key)
    reserved = int(held["amount"]) if held["status"] == ReservationStatus.HELD.value else 0
    return {"reservation_id": request_id, "available": left, "reserved": reserved}


async def commit(
    billing: InnerBilling,
    platform: PlatformSnapshot,
    *,
    tenant_id: str,
    feature_key: str,
    reservation_id: str,
    actual_amount: int,
) -> dict[str, Any]:
    """``POST /quota/commit`` (contract §3.4): usage of ``actual_amount``, the rest of the hold refunded."""
    key = _quota_key(billing, feature_key)
    snapshot = await _account(billing, platform, tenant_id)
    done = await usage.commit(billing.state, snapshot, request_id=reservation_id, actual=actual_amount)
    return {"available": await _available(billing, snapshot, key), "reserved": 0, "refunded": int(done["refunded"])}


async def release(
    billing: InnerBilling, platform: PlatformSnapshot, *, tenant_id: str, feature_key: str, reservation_id: str
) -> dict[str, Any]:
    """``POST /quota/release`` (contract §3.5): frees an uncommitted hold; after a commit, or again, releases 0."""
    key = _quota_key(billing, feature_key)
    snapshot = await _account(billing, platform, tenant_id)
    done = await usage.release(billing.state, snapshot, request_id=reservation_id)
    return {"available": await _available(billing, snapshot, key), "reserved": 0, "released": int(done["released"])}


# -- legacy usage routes (no caller in Dify today; contract §3.12-3.15) --------------------------------------------
def _legacy_key(billing: InnerBilling, feature_key: str) -> str:
    return _quota_key(billing, mapping.LEGACY_FEATURE_KEYS.get(feature_key, feature_key))


async def legacy_usage(
    billing: InnerBilling, platform: PlatformSnapshot, *, tenant_id: str, feature_key: str, delta: int
) -> dict[str, Any]:
    """``POST /tenant-feature-usage/usage``: a negative ``delta`` consumes ``-delta`` ("negative to consume", bs:293),
    checked against the limit. Dify sends no idempotency key, so each call is a new consumption (a transport retry
    counts twice; the contract says so). 0 writes nothing. A positive delta would add quota, which only a refund of
    the history id does here: refused."""
    key = _legacy_key(billing, feature_key)
    if delta > 0:
        raise ValidationFailed(
            "a positive delta would add quota; refund the consumption's history_id instead",
            field="delta",
            code="quota_grant_not_supported",
        )
    if delta == 0:
        return {"result": "success", "history_id": ""}
    snapshot = await _account(billing, platform, tenant_id)
    done = await usage.consume(
        billing.state, snapshot, key=key, amount=-delta, idempotency_key=f"dify-legacy:{uuid.uuid4()}"
    )
    return {"result": "success", "history_id": str(done["history_id"])}


async def legacy_refund(billing: InnerBilling, platform: PlatformSnapshot, *, history_id: str) -> dict[str, Any]:
    """``POST /tenant-feature-usage/refund``: reverses that consumption, once (a second refund answers the first)."""
    try:
        record_id = uuid.UUID(history_id)
    except ValueError:
        raise ValidationFailed("quota_usage_history_id must be a history_id", field="quota_usage_history_id") from None
    async with billing.state.session_factory() as session:
        external_id = await session.scalar(
            select(BillingAccount.external_id)
            .join(UsageRecord, UsageRecord.account_id == BillingAccount.id)
            .where(UsageRecord.id == record_id, BillingAccount.platform_id == platform.id)
        )
    if external_id is None:
        raise UsageRecordNotFound(f"no usage record {history_id}", field="quota_usage_history_id")
    snapshot = await _account(billing, platform, external_id)
    await usage.refund(billing.state, snapshot, history_id=record_id)
    return {"result": "success", "history_id": history_id}


async def legacy_usage_info(
    billing: InnerBilling, platform: PlatformSnapshot, *, tenant_id: str, feature_key: str
) -> dict[str, Any]:
    """``GET /billing/tenant_feature_plan/usage``: ``{used, limit, remaining}``, -1 for unlimited."""
    key = _legacy_key(billing, feature_key)
    snapshot = await _account(billing, platform, tenant_id)
    report = await usage.cached_limits_report(billing.state, snapshot)
    counter = _counter(snapshot, _entries(report), key)
    return {
        "used": counter.used,
        "limit": mapping.quota_limit(counter.limit),
        "remaining": mapping.available(counter.limit, counter.used),
    }


# -- links ---------------------------------------------------------------------------------------------------------
def link(template: str, **values: str) -> dict[str, str]:
    """A configured link (``DifyBillingSettings``), or "" when none is configured: Dify reads ``url`` only."""
    return {"url": mapping.fill_url(template, values)}


async def subscription_link(
    billing: InnerBilling,
    platform: PlatformSnapshot,
    *,
    plan: str,
    interval: str,
    prefilled_email: str,
    tenant_id: str,
) -> dict[str, str]:
    """``GET /subscription/payment-link`` (contract §3.9). With Stripe configured and an open invoice of the
    workspace for that plan, Stripe's checkout link for what is left of it (the oldest such invoice: what is owed
    first); otherwise the configured template, which is where the operator takes payment for a new plan."""
    if plan not in mapping.PAID_PLANS:
        raise ValidationFailed("plan must be professional or team", field="plan")
    if interval not in ("month", "year"):
        raise ValidationFailed("interval must be month or year", field="interval")
    if billing.payments is not None:
        snapshot = await _account(billing, platform, tenant_id)
        async with billing.state.session_factory() as session:
            number = await _oldest_open_invoice(billing, session, snapshot.account_id, plan)
            if number is not None:
                paid = await payments.create_payment_link(
                    session, billing.payments, number=number, account_id=snapshot.account_id, now=billing.state.clock()
                )
                return {"url": paid.url}
    return link(
        billing.config.payment_link_url,
        plan=plan,
        interval=interval,
        prefilled_email=prefilled_email,
        tenant_id=tenant_id,
    )


async def _oldest_open_invoice(
    billing: InnerBilling, session: AsyncSession, account_id: uuid.UUID, dify_plan: str
) -> str | None:
    """The number of the account's oldest open invoice whose plan Dify calls ``dify_plan``, if any."""
    rows = await session.execute(
        select(Invoice.number, Invoice.plan_code)
        .where(Invoice.account_id == account_id, Invoice.status == InvoiceStatus.OPEN.value)
        .order_by(Invoice.issued_at, Invoice.number)
    )
    for number, plan_code in rows:
        if billing.names.get(plan_code, billing.config.unmapped_plan) == dify_plan:
            return str(number)
    return None


async def invoices_link(
    billing: InnerBilling, platform: PlatformSnapshot, *, base_url: str, tenant_id: str, prefilled_email: str
) -> dict[str, str]:
    """``GET /invoices`` (contract §3.10; Dify's UI opens ``url``): with the portal mounted, a one-time link
    (10 minutes, billing:read) to the workspace's own Invoices page, which lists its invoices from billing/invoices
    and serves their PDFs; otherwise the configured template."""
    if billing.invoices_page is None:
        return link(billing.config.invoices_url, tenant_id=tenant_id, prefilled_email=prefilled_email)
    snapshot = await _account(billing, platform, tenant_id)
    return {"url": base_url.rstrip("/") + await billing.invoices_page(snapshot.account_id)}


# -- gauges Dify never reports (license-server billing dify-sync) --------------------------------------------------
@dataclass(frozen=True)
class TenantCounts:
    """What a Dify database says one workspace has (dify_database.py documents each query)."""

    tenant_id: str
    members: int
    apps: int
    vector_space: int  # MB, rounded up
    documents_upload_quota: int
    annotation_quota_limit: int


@dataclass
class SyncResult:
    tenants: int = 0
    gauges: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)


async def sync_gauges(billing: InnerBilling, platform: PlatformSnapshot, counts: Sequence[TenantCounts]) -> SyncResult:
    """Set each workspace's gauges to the counts (the core's set-gauge reconciliation: recorded as is, never
    refused). One workspace's failure (e.g. a key its plan makes monthly) is reported and the others go on."""
    result = SyncResult()
    for tenant in counts:
        try:
            snapshot = await _account(billing, platform, tenant.tenant_id)
            for name in GAUGE_FIELDS:
                value = getattr(tenant, name)
                await usage.set_gauge(billing.state, snapshot, key=billing.config.keys[name], value=value)
                result.gauges += 1
        except LicenseServerError as exc:
            result.failures.append({"tenant_id": tenant.tenant_id, "code": exc.code, "detail": exc.detail})
        else:
            result.tenants += 1
    return result
