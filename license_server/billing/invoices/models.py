"""Invoices, their lines, credit notes, the gapless number sequences and the cached PDFs.

An issued invoice is immutable: its lines, amounts, period and currency never change after the issuing transaction
(``_refuse_edits`` below makes the ORM refuse it, and no service offers an edit). What may still move is its status
(open -> paid, open -> void) with the timestamp of that move; a correction after issue is a credit note.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint, event, inspect
from sqlalchemy.orm import Mapped, Session, mapped_column

from license_server.db.base import Base, BigIntId, DecimalText, new_id
from license_server.errors import InvoiceImmutable


class InvoiceStatus(StrEnum):
    DRAFT = "draft"  # a preview: computed, never stored
    OPEN = "open"
    PAID = "paid"
    VOID = "void"


class Invoice(Base):
    __tablename__ = "billing_invoices"
    __table_args__ = (
        # Issuance is idempotent: one invoice per subscription and period, however often the job runs.
        UniqueConstraint("subscription_id", "period_start", name="uq_billing_invoices_subscription_period"),
        Index("ix_billing_invoices_account_id", "account_id", "period_start"),
        Index("ix_billing_invoices_status_due_at", "status", "due_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("billing_accounts.id", ondelete="RESTRICT"))
    subscription_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("billing_subscriptions.id", ondelete="RESTRICT"))
    plan_code: Mapped[str] = mapped_column(String(64))
    period_start: Mapped[datetime]  # the period whose plan fee this invoice bills in advance
    period_end: Mapped[datetime]
    arrears_start: Mapped[datetime]  # flex and metered usage in [arrears_start, arrears_end) is billed here
    arrears_end: Mapped[datetime]
    currency: Mapped[str] = mapped_column(String(3))
    subtotal: Mapped[Decimal] = mapped_column(DecimalText())  # the exact sum of the lines
    total: Mapped[Decimal] = mapped_column(DecimalText())  # the subtotal rounded once to the currency's minor unit
    status: Mapped[str] = mapped_column(String(8))
    issued_at: Mapped[datetime]
    due_at: Mapped[datetime]
    paid_at: Mapped[datetime | None]
    voided_at: Mapped[datetime | None]
    void_reason: Mapped[str | None] = mapped_column(String(500))


class InvoiceLine(Base):
    __tablename__ = "billing_invoice_lines"
    __table_args__ = (UniqueConstraint("invoice_id", "position", name="uq_billing_invoice_lines_invoice_position"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    invoice_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("billing_invoices.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(String(500))
    quantity: Mapped[Decimal] = mapped_column(DecimalText())
    unit_price: Mapped[Decimal] = mapped_column(DecimalText())
    amount: Mapped[Decimal] = mapped_column(DecimalText())  # exact: quantity x unit price, never rounded
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]


class CreditNote(Base):
    """A correction of an issued invoice (a refund): numbered like invoices, never edited."""

    __tablename__ = "billing_credit_notes"
    __table_args__ = (Index("ix_billing_credit_notes_invoice_id", "invoice_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    invoice_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("billing_invoices.id", ondelete="RESTRICT"))
    amount: Mapped[Decimal] = mapped_column(DecimalText())
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(String(500))
    issued_at: Mapped[datetime]


class NumberSequence(Base):
    """The next number of a document series (invoices, credit notes): advanced in the transaction that issues the
    documents, so a rollback gives the numbers back and the series has no gaps."""

    __tablename__ = "billing_number_sequences"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    next_value: Mapped[int] = mapped_column(BigInteger)


class InvoicePdf(Base):
    """The rendered PDF of an invoice, cached: an issued invoice never changes, so neither does its PDF."""

    __tablename__ = "billing_invoice_pdfs"

    invoice_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("billing_invoices.id", ondelete="CASCADE"), primary_key=True
    )
    content: Mapped[bytes] = mapped_column(LargeBinary)
    rendered_at: Mapped[datetime]


# What may still change on an issued invoice: its status and the moments of its moves.
_MUTABLE_INVOICE_COLUMNS = frozenset({"status", "paid_at", "voided_at", "void_reason"})


@event.listens_for(Session, "before_flush")
def _refuse_edits(session: Session, _context: Any, _instances: Any) -> None:
    for obj in session.dirty:
        if isinstance(obj, Invoice):
            changed = {attr.key for attr in inspect(obj).attrs if attr.history.has_changes()}
            if changed - _MUTABLE_INVOICE_COLUMNS:
                raise InvoiceImmutable(f"invoice {obj.number} is issued; its {sorted(changed)} cannot change")
        elif isinstance(obj, InvoiceLine | CreditNote) and session.is_modified(obj):
            raise InvoiceImmutable("issued invoice lines and credit notes cannot change")
    for obj in session.deleted:
        if isinstance(obj, Invoice | InvoiceLine | CreditNote):
            raise InvoiceImmutable("issued invoices, their lines and credit notes are never deleted")
