"""Payments over HTTP: staff record payments, refunds and failed attempts (the manual provider); Stripe posts its
webhook events (verified by their signature, applied once by event id)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromPath, JSONBody

from license_server.auth.guards import CurrentActor, needs
from license_server.auth.tokens import Permission
from license_server.billing.controllers import PLATFORM_PREFIX
from license_server.billing.invoices import service as invoices
from license_server.billing.invoices.controllers import checked_number, invoice_out
from license_server.billing.invoices.schemas import (
    FailureIn,
    PaymentIn,
    PaymentOut,
    PaymentWriteOut,
    RefundIn,
    StripeWebhookOut,
)
from license_server.billing.payments import service
from license_server.billing.payments.models import Payment
from license_server.billing.payments.stripe_provider import verified_event
from license_server.dependencies import Db, RuntimeDep
from license_server.schemas_common import problem_spec

_WRITE_ERRORS = {
    409: problem_spec("invoice_state_conflict (void, already paid, over-refund) or idempotency_key_reused"),
}


def payment_out(payment: Payment) -> PaymentOut:
    return PaymentOut(
        id=payment.id,
        kind=payment.kind,
        amount=format(payment.amount, "f"),
        currency=payment.currency,
        provider=payment.provider,
        idempotency_key=payment.idempotency_key,
        reference=payment.reference,
        note=payment.note,
        occurred_at=payment.occurred_at,
    )


async def _written(db: Db, result: service.PaymentResult, runtime: Any) -> PaymentWriteOut:
    view = await invoices.get_invoice(db, invoice_id=result.invoice.id)
    return PaymentWriteOut(
        payment=payment_out(result.payment),
        invoice=await invoice_out(db, view, issuer=runtime.settings.invoice_issuer),
        replayed=result.replayed,
    )


class PaymentsAdminController(Controller):
    """The manual provider: what arrived by bank transfer, what was given back, what bounced."""

    path = "/v1/admin/billing/invoices/{number:str}"
    tags = ["billing (admin)"]

    @get("/payments", summary="The invoice's payments, refunds and failed attempts", opt=needs(Permission.BILLING_READ))
    async def list_payments(self, db: Db, number: FromPath[str]) -> list[PaymentOut]:
        view = await invoices.get_invoice(db, number=checked_number(number))
        return [payment_out(p) for p in await service.list_payments(db, view.invoice.id)]

    @post(
        "/payments",
        summary="Record a payment (idempotent by idempotency_key); reaching the total marks the invoice paid",
        opt=needs(Permission.BILLING_WRITE),
        responses=_WRITE_ERRORS,
    )
    async def record_payment(
        self, db: Db, actor: CurrentActor, number: FromPath[str], data: JSONBody[PaymentIn], runtime: RuntimeDep
    ) -> PaymentWriteOut:
        result = await service.record_payment(
            db,
            provider=service.MANUAL,
            number=checked_number(number),
            amount=data.amount,
            idempotency_key=data.idempotency_key,
            actor=actor,
            now=runtime.clock(),
            reference=data.reference,
            note=data.note,
        )
        return await _written(db, result, runtime)

    @post(
        "/refunds",
        summary="Record a refund: a negative payment and a credit note (idempotent by idempotency_key)",
        opt=needs(Permission.BILLING_WRITE),
        responses=_WRITE_ERRORS,
    )
    async def record_refund(
        self, db: Db, actor: CurrentActor, number: FromPath[str], data: JSONBody[RefundIn], runtime: RuntimeDep
    ) -> PaymentWriteOut:
        result = await service.record_refund(
            db,
            provider=service.MANUAL,
            number=checked_number(number),
            amount=data.amount,
            idempotency_key=data.idempotency_key,
            reason=data.reason,
            actor=actor,
            now=runtime.clock(),
            credit_note_prefix=runtime.settings.credit_note_number_prefix,
        )
        return await _written(db, result, runtime)

    @post(
        "/failures",
        summary="Record a failed payment attempt: payment.failed, and the subscription becomes past due",
        opt=needs(Permission.BILLING_WRITE),
        responses=_WRITE_ERRORS,
    )
    async def record_failure(
        self, db: Db, actor: CurrentActor, number: FromPath[str], data: JSONBody[FailureIn], runtime: RuntimeDep
    ) -> PaymentWriteOut:
        result = await service.record_failure(
            db,
            provider=service.MANUAL,
            number=checked_number(number),
            idempotency_key=data.idempotency_key,
            reason=data.reason,
            actor=actor,
            now=runtime.clock(),
        )
        return await _written(db, result, runtime)


class StripeWebhookController(Controller):
    """Stripe's webhook endpoint. Authenticated by the Stripe-Signature header alone (no bearer token)."""

    path = PLATFORM_PREFIX + "/stripe"
    tags = ["billing (Stripe)"]

    @post(
        "/webhook",
        summary="Stripe events: checkout.session.completed, customer.subscription.*, invoice.paid, "
        "invoice.payment_failed",
        status_code=200,
        responses={
            400: problem_spec("webhook_signature_invalid: the Stripe-Signature header does not verify"),
            409: problem_spec("payment_provider_not_configured: no webhook secret is configured"),
        },
    )
    async def webhook(self, request: Request[Any, Any, Any], db: Db, runtime: RuntimeDep) -> StripeWebhookOut:
        event = verified_event(runtime.settings, await request.body(), request.headers.get("stripe-signature"))
        outcome = await service.handle_stripe_event(db, event, now=runtime.clock())
        return StripeWebhookOut(event_id=outcome.event_id, outcome=outcome.outcome, detail=outcome.detail)
