"""Payments and refunds against invoices, and what the Stripe provider remembers: processed webhook events, the
latest state applied per Stripe object (for out-of-order delivery), and each account's Stripe customer."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from license_server.db.base import Base, DecimalText, new_id


class PaymentKind(StrEnum):
    PAYMENT = "payment"  # + amount received
    REFUND = "refund"  # - amount given back (with a credit note)
    FAILURE = "failure"  # an attempt that failed: amount 0, moves the subscription to past_due


class Payment(Base):
    """One payment, refund or failed attempt. Append-only; idempotent by (provider, idempotency key)."""

    __tablename__ = "billing_payments"
    __table_args__ = (
        UniqueConstraint("provider", "idempotency_key", name="uq_billing_payments_provider_key"),
        Index("ix_billing_payments_invoice_id", "invoice_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    invoice_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("billing_invoices.id", ondelete="RESTRICT"))
    kind: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Decimal] = mapped_column(DecimalText())  # signed: refunds are negative
    currency: Mapped[str] = mapped_column(String(3))
    provider: Mapped[str] = mapped_column(String(16))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    request_digest: Mapped[str] = mapped_column(String(64))
    reference: Mapped[str] = mapped_column(String(200), default="")  # the provider's id, a bank reference, ...
    note: Mapped[str] = mapped_column(String(500), default="")
    credit_note_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("billing_credit_notes.id"))
    actor: Mapped[str | None] = mapped_column(String(200))
    occurred_at: Mapped[datetime]


class StripeEvent(Base):
    """A Stripe webhook event, recorded once: a redelivery of a processed id changes nothing."""

    __tablename__ = "billing_stripe_events"

    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    created: Mapped[datetime]  # the event's own time (Stripe's ``created``)
    object_id: Mapped[str | None] = mapped_column(String(255))
    outcome: Mapped[str] = mapped_column(String(32))  # applied | stale | ignored | rejected
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    received_at: Mapped[datetime]


class StripeObjectState(Base):
    """The newest event applied to a Stripe object: an older one arriving later is recorded, not applied."""

    __tablename__ = "billing_stripe_objects"

    object_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    last_event_created: Mapped[datetime]
    last_event_id: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(32))


class StripeCustomer(Base):
    __tablename__ = "billing_stripe_customers"

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("billing_accounts.id", ondelete="CASCADE"), primary_key=True
    )
    customer_id: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime]
