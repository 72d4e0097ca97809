"""Payments, refunds and failed attempts against invoices, from any provider; and Stripe's webhook events.

Every write is idempotent by (provider, idempotency key): a replay answers the first result, a different request
under a used key is refused (``idempotency_key_reused``). A payment that covers the invoice's total moves it
open -> paid (``invoices.service.mark_paid``, the one writer of an invoice's status); then the subscription follows
in ``_apply_payment_outcome`` — the one place the subscription lifecycle is called from, so the integrator swaps in
``billing.subscriptions.record_payment_outcome`` there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.audit import record_audit
from license_server.auth.tokens import Actor, Role
from license_server.billing.accounts.models import Subscription, SubscriptionStatus
from license_server.billing.clocks.service import account_clock
from license_server.billing.invoices import service as invoices
from license_server.billing.invoices.calculation import ZERO, minor_unit_digits
from license_server.billing.invoices.models import Invoice, InvoiceStatus
from license_server.billing.payments.models import Payment, PaymentKind, StripeCustomer, StripeEvent, StripeObjectState
from license_server.billing.payments.providers import Link, PaymentProvider, PaymentRequest
from license_server.billing.sql import upsert_insert
from license_server.billing.subscriptions import service as subscriptions
from license_server.errors import (
    IdempotencyConflict,
    InvoiceStateConflict,
    LicenseServerError,
    SubscriptionNotFound,
    ValidationFailed,
)

logger = logging.getLogger(__name__)
MANUAL = "manual"
STRIPE = "stripe"
STRIPE_ACTOR = Actor(name="stripe:webhook", role=Role.BILLING)
PAYMENTS_ACTOR = Actor(name="billing:payments", role=Role.BILLING)  # the subscription moves a payment caused


@dataclass(frozen=True)
class PaymentResult:
    payment: Payment
    invoice: Invoice
    replayed: bool


def _digest(**request: Any) -> str:
    canonical = json.dumps(request, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _check_amount(amount: Decimal, currency: str, field: str = "amount") -> None:
    if not amount.is_finite() or amount <= ZERO:
        raise ValidationFailed(f"{field}: must be greater than 0", field=field)
    if amount != amount.quantize(Decimal(1).scaleb(-minor_unit_digits(currency))):
        raise ValidationFailed(
            f"{field}: at most {minor_unit_digits(currency)} decimal places in {currency}", field=field
        )


async def payment_totals(
    session: AsyncSession, invoice_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[Decimal, Decimal]]:
    """(paid, refunded) per invoice, summed exactly (amounts are decimal text on SQLite, so not in SQL)."""
    totals: dict[uuid.UUID, list[Decimal]] = defaultdict(lambda: [ZERO, ZERO])
    if invoice_ids:
        for invoice_id, kind, amount in await session.execute(
            select(Payment.invoice_id, Payment.kind, Payment.amount).where(Payment.invoice_id.in_(list(invoice_ids)))
        ):
            if kind == PaymentKind.PAYMENT:
                totals[invoice_id][0] += amount
            elif kind == PaymentKind.REFUND:
                totals[invoice_id][1] -= amount
    return {key: (value[0], value[1]) for key, value in totals.items()}


async def list_payments(session: AsyncSession, invoice_id: uuid.UUID) -> list[Payment]:
    rows = await session.scalars(
        select(Payment).where(Payment.invoice_id == invoice_id).order_by(Payment.occurred_at, Payment.id)
    )
    return list(rows.all())


async def _replayed(session: AsyncSession, provider: str, key: str, digest: str) -> Payment | None:
    payment = await session.scalar(select(Payment).where(Payment.provider == provider, Payment.idempotency_key == key))
    if payment is not None and payment.request_digest != digest:
        raise IdempotencyConflict("this idempotency key was used for a different request", field="idempotency_key")
    return payment


async def _locked_invoice(session: AsyncSession, number: str) -> invoices.InvoiceView:
    view = await invoices.get_invoice(session, number=number)
    await session.execute(select(Invoice.id).where(Invoice.id == view.invoice.id).with_for_update())
    return view


async def record_payment(
    session: AsyncSession,
    *,
    provider: str,
    number: str,
    amount: Decimal,
    idempotency_key: str,
    actor: Actor,
    now: datetime,
    reference: str = "",
    note: str = "",
) -> PaymentResult:
    """Money received for an invoice. Partial payments add up; the one that reaches the total marks it paid."""
    digest = _digest(op="payment", number=number, amount=format(amount, "f"), reference=reference)
    await invoices.begin_write(session)
    try:
        replay = await _replayed(session, provider, idempotency_key, digest)
        if replay is not None:
            invoice = await session.get(Invoice, replay.invoice_id)
            assert invoice is not None
            await session.commit()
            result = PaymentResult(replay, invoice, replayed=True)
        else:
            view = await _locked_invoice(session, number)
            invoice = view.invoice
            _check_amount(amount, invoice.currency)
            if invoice.status == InvoiceStatus.VOID:
                raise InvoiceStateConflict(f"invoice {number} is void; it cannot be paid", field="number")
            paid, _refunded = (await payment_totals(session, [invoice.id])).get(invoice.id, (ZERO, ZERO))
            if invoice.status == InvoiceStatus.PAID or paid + amount > invoice.total:
                raise InvoiceStateConflict(
                    f"invoice {number} has {invoice.total - paid} {invoice.currency} left to pay", field="amount"
                )
            payment = _payment(invoice, PaymentKind.PAYMENT, amount, provider, idempotency_key, digest, actor, now)
            payment.reference, payment.note = reference, note
            session.add(payment)
            if paid + amount == invoice.total:
                invoices.mark_paid(session, view, now=now)
            await _audit(session, actor, "billing.payment_recorded", invoice, payment, now)
            await session.commit()
            result = PaymentResult(payment, invoice, replayed=False)
    except BaseException:
        await session.rollback()
        raise
    if result.invoice.status == InvoiceStatus.PAID:  # a replay applies it again: a crash in between loses nothing
        await _apply_payment_outcome(session, subscription_id=result.invoice.subscription_id, succeeded=True, now=now)
        await _reload(session, result)
    return result


async def record_refund(
    session: AsyncSession,
    *,
    provider: str,
    number: str,
    amount: Decimal,
    idempotency_key: str,
    reason: str,
    actor: Actor,
    now: datetime,
    credit_note_prefix: str = "CN-",
) -> PaymentResult:
    """Money given back: a negative payment and a credit note for it. The invoice stays paid (it was issued and
    paid; the credit note is the correction); at most what was paid and not yet refunded."""
    digest = _digest(op="refund", number=number, amount=format(amount, "f"), reason=reason)
    await invoices.begin_write(session)
    try:
        replay = await _replayed(session, provider, idempotency_key, digest)
        if replay is not None:
            invoice = await session.get(Invoice, replay.invoice_id)
            assert invoice is not None
            await session.commit()
            return PaymentResult(replay, invoice, replayed=True)
        view = await _locked_invoice(session, number)
        invoice = view.invoice
        _check_amount(amount, invoice.currency)
        paid, refunded = (await payment_totals(session, [invoice.id])).get(invoice.id, (ZERO, ZERO))
        if amount > paid - refunded:
            raise InvoiceStateConflict(
                f"invoice {number} has {paid - refunded} {invoice.currency} paid and not refunded", field="amount"
            )
        note = await invoices.issue_credit_note(
            session, view, amount=amount, reason=reason, now=now, prefix=credit_note_prefix
        )
        payment = _payment(invoice, PaymentKind.REFUND, -amount, provider, idempotency_key, digest, actor, now)
        payment.note, payment.credit_note_id = reason, note.id
        session.add(payment)
        await _audit(session, actor, "billing.refund_recorded", invoice, payment, now)
        await session.commit()
        return PaymentResult(payment, invoice, replayed=False)
    except BaseException:
        await session.rollback()
        raise


async def record_failure(
    session: AsyncSession,
    *,
    provider: str,
    number: str,
    idempotency_key: str,
    reason: str,
    actor: Actor,
    now: datetime,
) -> PaymentResult:
    """A failed payment attempt: recorded, ``payment.failed`` emitted, the subscription moves to past due. A failure
    reported for an invoice that is already paid or void (a late or out-of-order report) is recorded and moves
    nothing."""
    digest = _digest(op="failure", number=number, reason=reason)
    await invoices.begin_write(session)
    try:
        replay = await _replayed(session, provider, idempotency_key, digest)
        if replay is not None:
            invoice = await session.get(Invoice, replay.invoice_id)
            assert invoice is not None
            await session.commit()
            result = PaymentResult(replay, invoice, replayed=True)
        else:
            view = await _locked_invoice(session, number)
            invoice = view.invoice
            payment = _payment(invoice, PaymentKind.FAILURE, ZERO, provider, idempotency_key, digest, actor, now)
            payment.note = reason
            session.add(payment)
            if invoice.status == InvoiceStatus.OPEN:
                invoices.emit_payment_failed(session, view, now=now, detail={"reason": reason, "provider": provider})
            await _audit(session, actor, "billing.payment_failed", invoice, payment, now)
            await session.commit()
            result = PaymentResult(payment, invoice, replayed=False)
    except BaseException:
        await session.rollback()
        raise
    if result.invoice.status == InvoiceStatus.OPEN:
        await _apply_payment_outcome(session, subscription_id=result.invoice.subscription_id, succeeded=False, now=now)
        await _reload(session, result)
    return result


def _payment(
    invoice: Invoice,
    kind: PaymentKind,
    amount: Decimal,
    provider: str,
    key: str,
    digest: str,
    actor: Actor,
    now: datetime,
) -> Payment:
    return Payment(
        id=uuid.uuid4(),
        invoice_id=invoice.id,
        kind=kind.value,
        amount=amount,
        currency=invoice.currency,
        provider=provider,
        idempotency_key=key,
        request_digest=digest,
        reference="",
        note="",
        credit_note_id=None,
        actor=actor.name,
        occurred_at=now,
    )


async def _audit(
    session: AsyncSession, actor: Actor, action: str, invoice: Invoice, payment: Payment, now: datetime
) -> None:
    await record_audit(
        session,
        actor=actor,
        action=action,
        target_type="billing_invoice",
        target_id=invoice.id,
        detail={
            "number": invoice.number,
            "payment_id": str(payment.id),
            "amount": format(payment.amount, "f"),
            "provider": payment.provider,
        },
        clock=lambda: now,
    )


async def _reload(session: AsyncSession, result: PaymentResult) -> None:
    """The lifecycle's transaction began with a rollback, which expired what the caller still reads."""
    await session.refresh(result.invoice)
    await session.refresh(result.payment)


# -- the subscription follows -------------------------------------------------------------------------------------
async def _apply_payment_outcome(
    session: AsyncSession, *, subscription_id: uuid.UUID, succeeded: bool, now: datetime
) -> None:
    """The subscription side of a payment outcome, in its own transaction (after the payment's has committed): the
    lifecycle owns what it means (paid lifts past due; a failure makes it past due; paused and canceled stay). It
    happens at the account's time: on a test clock, the clock's, as every other date of that account."""
    now = await _account_now(session, subscription_id, now)
    await subscriptions.record_payment_outcome(session, subscription_id, succeeded=succeeded, now=now)


async def _account_now(session: AsyncSession, subscription_id: uuid.UUID, now: datetime) -> datetime:
    try:
        account_id, _platform_id = await invoices.subscription_account(session, subscription_id)
    except SubscriptionNotFound:
        return now
    return (await account_clock(session, account_id, lambda: now))()


# -- Stripe webhook events ---------------------------------------------------------------------------------------
# Stripe's subscription statuses, as ours.
_STRIPE_SUBSCRIPTION_STATUS = {
    "active": SubscriptionStatus.ACTIVE,
    "trialing": SubscriptionStatus.TRIALING,
    "past_due": SubscriptionStatus.PAST_DUE,
    "unpaid": SubscriptionStatus.PAST_DUE,
    "paused": SubscriptionStatus.PAUSED,
    "canceled": SubscriptionStatus.CANCELED,
    "incomplete_expired": SubscriptionStatus.CANCELED,
}
INVOICE_METADATA = "license_server_invoice"  # our invoice number, on Checkout Sessions and Stripe invoices
SUBSCRIPTION_METADATA = "license_server_subscription"  # our subscription id, on Stripe subscriptions
ACCOUNT_METADATA = "license_server_account"


@dataclass(frozen=True)
class StripeOutcome:
    event_id: str
    outcome: str  # applied | stale | ignored | rejected | replayed
    detail: dict[str, Any]


def _amount_from_minor(value: int, currency: str) -> Decimal:
    return Decimal(int(value)).scaleb(-minor_unit_digits(currency))


def to_minor_units(amount: Decimal, currency: str) -> int:
    return int(amount.scaleb(minor_unit_digits(currency)))


async def handle_stripe_event(session: AsyncSession, event: dict[str, Any], *, now: datetime) -> StripeOutcome:
    """Apply one verified Stripe event, once. A redelivered id answers ``replayed``; an event older than the newest
    one applied to the same Stripe object answers ``stale`` and changes nothing (Stripe does not deliver in order);
    events for objects that carry none of our metadata are recorded as ``ignored``."""
    event_id, event_type = str(event["id"]), str(event["type"])
    created = datetime.fromtimestamp(int(event["created"]), UTC)
    obj: dict[str, Any] = event.get("data", {}).get("object", {}) or {}
    object_id = str(obj.get("id")) if obj.get("id") else None
    await session.rollback()
    if await session.get(StripeEvent, event_id) is not None:
        return StripeOutcome(event_id, "replayed", {})
    state = await session.get(StripeObjectState, object_id) if object_id else None
    if state is not None and state.last_event_created > created:
        outcome = StripeOutcome(event_id, "stale", {"newer_event": state.last_event_id})
    else:
        try:
            outcome = await _apply_stripe(session, event_id, event_type, obj, now)
        except LicenseServerError as exc:
            # Our answer to this event will not change on redelivery (an unknown invoice, an amount over what is
            # due): recorded, so Stripe's retries stop; the detail says why.
            await session.rollback()
            outcome = StripeOutcome(event_id, "rejected", {"code": exc.code, "detail": exc.detail})
        if outcome.outcome == "applied" and object_id:
            await _remember_object(session, object_id, created, event_id, str(obj.get("status", event_type)))
    await _record_event(session, event_id, event_type, created, object_id, outcome, now)
    return outcome


async def _record_event(
    session: AsyncSession,
    event_id: str,
    event_type: str,
    created: datetime,
    object_id: str | None,
    outcome: StripeOutcome,
    now: datetime,
) -> None:
    await session.execute(
        upsert_insert(session.get_bind().dialect.name, StripeEvent.__table__)
        .values(
            event_id=event_id,
            type=event_type,
            created=created,
            object_id=object_id,
            outcome=outcome.outcome,
            detail=outcome.detail,
            received_at=now,
        )
        .on_conflict_do_nothing(index_elements=["event_id"])
    )
    await session.commit()


async def _remember_object(
    session: AsyncSession, object_id: str, created: datetime, event_id: str, status: str
) -> None:
    state = await session.get(StripeObjectState, object_id, populate_existing=True)
    if state is None:
        session.add(
            StripeObjectState(object_id=object_id, last_event_created=created, last_event_id=event_id, status=status)
        )
    elif state.last_event_created <= created:
        state.last_event_created, state.last_event_id, state.status = created, event_id, status
    await session.commit()


async def _apply_stripe(
    session: AsyncSession, event_id: str, event_type: str, obj: dict[str, Any], now: datetime
) -> StripeOutcome:
    metadata = obj.get("metadata") or {}
    if event_type == "checkout.session.completed":
        number = metadata.get(INVOICE_METADATA)
        if not number or obj.get("payment_status") != "paid":
            return StripeOutcome(event_id, "ignored", {"reason": "no invoice in metadata, or not paid"})
        currency = str(obj.get("currency") or "usd").upper()
        result = await record_payment(
            session,
            provider=STRIPE,
            number=str(number),
            amount=_amount_from_minor(int(obj.get("amount_total") or 0), currency),
            idempotency_key=f"checkout:{obj['id']}",
            actor=STRIPE_ACTOR,
            now=now,
            reference=str(obj.get("payment_intent") or obj["id"]),
        )
        return StripeOutcome(event_id, "applied", {"invoice": result.invoice.number, "status": result.invoice.status})
    if event_type in ("invoice.paid", "invoice.payment_failed"):
        number = metadata.get(INVOICE_METADATA)
        if not number:
            return StripeOutcome(event_id, "ignored", {"reason": "no invoice in metadata"})
        if event_type == "invoice.paid":
            currency = str(obj.get("currency") or "usd").upper()
            result = await record_payment(
                session,
                provider=STRIPE,
                number=str(number),
                amount=_amount_from_minor(int(obj.get("amount_paid") or 0), currency),
                idempotency_key=f"invoice_paid:{obj['id']}",
                actor=STRIPE_ACTOR,
                now=now,
                reference=str(obj["id"]),
            )
        else:
            result = await record_failure(
                session,
                provider=STRIPE,
                number=str(number),
                idempotency_key=f"invoice_failed:{event_id}",
                reason=str((obj.get("last_finalization_error") or {}).get("message") or "payment failed"),
                actor=STRIPE_ACTOR,
                now=now,
            )
        return StripeOutcome(event_id, "applied", {"invoice": result.invoice.number, "status": result.invoice.status})
    if event_type.startswith("customer.subscription."):
        subscription_ref = metadata.get(SUBSCRIPTION_METADATA)
        target = _STRIPE_SUBSCRIPTION_STATUS.get(str(obj.get("status")))
        if event_type == "customer.subscription.deleted":
            target = SubscriptionStatus.CANCELED
        if not subscription_ref or target is None:
            return StripeOutcome(event_id, "ignored", {"reason": "no subscription in metadata, or a status we keep"})
        try:
            subscription_id = uuid.UUID(str(subscription_ref))
            _account, platform_id = await invoices.subscription_account(session, subscription_id)
        except (ValueError, SubscriptionNotFound):
            return StripeOutcome(event_id, "ignored", {"reason": "unknown subscription"})
        await session.commit()  # the event's record; the lifecycle runs its own transaction
        await _follow_stripe_subscription(session, subscription_id, platform_id, target, now=now)
        await session.commit()
        return StripeOutcome(event_id, "applied", {"subscription": str(subscription_id), "status": target.value})
    return StripeOutcome(event_id, "ignored", {"reason": "an event type this server does not act on"})


async def _follow_stripe_subscription(
    session: AsyncSession,
    subscription_id: uuid.UUID,
    platform_id: uuid.UUID,
    target: SubscriptionStatus,
    *,
    now: datetime,
) -> None:
    """Stripe's view of a subscription, through the lifecycle's own verbs (its one status writer): past due and
    active are payment outcomes, canceled ends it at once, paused pauses it; a trial is ours to run."""
    now = await _account_now(session, subscription_id, now)
    subscription = await session.get(Subscription, subscription_id, populate_existing=True)
    if subscription is None or subscription.status in (target.value, SubscriptionStatus.CANCELED.value):
        await session.commit()
        return
    if target in (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE):
        await subscriptions.record_payment_outcome(
            session, subscription_id, succeeded=target is SubscriptionStatus.ACTIVE, now=now
        )
    elif target is SubscriptionStatus.CANCELED:
        await subscriptions.cancel(
            session,
            actor=STRIPE_ACTOR,
            platform_id=platform_id,
            subscription_id=subscription_id,
            at_period_end=False,
            clock=lambda: now,
        )
    elif target is SubscriptionStatus.PAUSED:
        await subscriptions.pause(
            session, actor=STRIPE_ACTOR, platform_id=platform_id, subscription_id=subscription_id, clock=lambda: now
        )
    else:
        await session.commit()


# -- links ----------------------------------------------------------------------------------------------------------
async def create_payment_link(
    session: AsyncSession, provider: PaymentProvider, *, number: str, account_id: uuid.UUID | None, now: datetime
) -> Link:
    """A link that pays what is left of an open invoice (``account_id`` confines it to that account's invoices);
    the provider's customer is created on first use and remembered."""
    view = await invoices.get_invoice(session, number=number, account_id=account_id)
    invoice = view.invoice
    if invoice.status != InvoiceStatus.OPEN:
        raise InvoiceStateConflict(f"invoice {number} is {invoice.status}; there is nothing to pay", field="number")
    paid, _ = (await payment_totals(session, [invoice.id])).get(invoice.id, (ZERO, ZERO))
    customer = await session.get(StripeCustomer, invoice.account_id)
    request = PaymentRequest(
        invoice_number=invoice.number,
        account_id=str(invoice.account_id),
        external_id=view.external_id,
        subscription_id=str(invoice.subscription_id),
        amount_due=invoice.total - paid,
        currency=invoice.currency,
        customer_id=customer.customer_id if customer else None,
    )
    known_customer, account = customer is not None, invoice.account_id
    await session.rollback()  # no transaction stays open across the provider's network call
    link, customer_id = await provider.payment_link(request)
    if not known_customer and customer_id is not None:
        await session.execute(
            upsert_insert(session.get_bind().dialect.name, StripeCustomer.__table__)
            .values(account_id=account, customer_id=customer_id, created_at=now)
            .on_conflict_do_nothing(index_elements=["account_id"])
        )
        await session.commit()
    return link


async def create_portal_link(session: AsyncSession, provider: PaymentProvider, *, account_id: uuid.UUID) -> Link:
    customer = await session.get(StripeCustomer, account_id)
    if customer is None:
        raise InvoiceStateConflict(
            "the account has no customer at the payment provider yet; it is made by its first payment link",
            field="external_id",
        )
    customer_id = customer.customer_id
    await session.rollback()
    return await provider.portal_link(customer_id)
