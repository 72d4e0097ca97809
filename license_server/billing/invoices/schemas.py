"""Invoices, payments and the usage breakdown on the wire. Amounts are decimal strings, never floats."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import Field

from license_server.billing.money import Amount
from license_server.billing.schemas import IdempotencyKey
from license_server.schemas_common import Model

InvoiceNumber = Annotated[str, Field(pattern=r"^[A-Z0-9-]{1,32}$")]
Text = Annotated[str, Field(max_length=500)]
Reference = Annotated[str, Field(max_length=200)]


class InvoiceLineOut(Model):
    kind: str = Field(description="plan | flex | metered")
    description: str
    quantity: str
    unit_price: str
    amount: str = Field(description="Exact, never rounded: only the total is")
    period_start: datetime
    period_end: datetime


class CreditNoteOut(Model):
    number: str
    amount: str
    reason: str
    issued_at: datetime


class InvoiceOut(Model):
    number: str | None = Field(description="null on a preview")
    status: str = Field(description="draft (a preview) | open | paid | void")
    platform: str
    external_id: str
    plan: str
    currency: str
    period_start: datetime
    period_end: datetime
    arrears_start: datetime = Field(description="Flex credits and metered usage from here ...")
    arrears_end: datetime = Field(description="... until here are billed in arrears")
    issued_at: datetime | None
    due_at: datetime | None
    lines: list[InvoiceLineOut]
    subtotal: str = Field(description="The exact sum of the lines")
    total: str = Field(description="The subtotal rounded once, half-up, to the currency's minor unit")
    amount_paid: str
    amount_refunded: str
    amount_due: str
    credit_notes: list[CreditNoteOut]


class InvoiceSummaryOut(Model):
    id: uuid.UUID
    number: str
    status: str
    account_id: uuid.UUID
    subscription_id: uuid.UUID
    plan_code: str
    currency: str
    total: str
    period_start: datetime
    period_end: datetime
    issued_at: datetime
    due_at: datetime


class VoidIn(Model):
    reason: Annotated[str, Field(min_length=1, max_length=500)]


class PaymentIn(Model):
    amount: Amount = Field(description="In the invoice's currency, a decimal string, at most its minor unit's digits")
    idempotency_key: IdempotencyKey
    reference: Reference = ""
    note: Text = ""


class RefundIn(Model):
    amount: Amount
    idempotency_key: IdempotencyKey
    reason: Annotated[str, Field(min_length=1, max_length=500)]


class FailureIn(Model):
    idempotency_key: IdempotencyKey
    reason: Annotated[str, Field(min_length=1, max_length=500)]


class PaymentOut(Model):
    id: uuid.UUID
    kind: str = Field(description="payment | refund | failure")
    amount: str = Field(description="Signed: a refund is negative")
    currency: str
    provider: str
    idempotency_key: str
    reference: str
    note: str
    occurred_at: datetime


class PaymentWriteOut(Model):
    payment: PaymentOut
    invoice: InvoiceOut
    replayed: bool


class LinkOut(Model):
    url: str
    provider: str
    provider_id: str


class IssuedOut(Model):
    issued: int
    invoices: list[InvoiceSummaryOut]


class StripeWebhookOut(Model):
    event_id: str
    outcome: str
    detail: dict[str, Any]
