"""The template data of an invoice: what its JSON and its PDF both show, built once from the stored invoice (or a
preview), so the two can never disagree."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from license_server.billing.invoices.calculation import ZERO, ComputedInvoice, line_amount_text, money_text
from license_server.billing.invoices.models import CreditNote, InvoiceStatus
from license_server.billing.invoices.service import InvoiceView, Preview


@dataclass(frozen=True)
class DocumentLine:
    kind: str
    description: str
    quantity: str
    unit_price: str
    amount: str
    period_start: datetime
    period_end: datetime


@dataclass(frozen=True)
class DocumentCreditNote:
    number: str
    amount: str
    reason: str
    issued_at: datetime


@dataclass(frozen=True)
class InvoiceDocument:
    number: str | None  # None: a preview (draft)
    status: str
    issuer: str
    platform: str
    external_id: str
    plan: str
    currency: str
    period_start: datetime
    period_end: datetime
    arrears_start: datetime
    arrears_end: datetime
    issued_at: datetime | None
    due_at: datetime | None
    lines: tuple[DocumentLine, ...]
    subtotal: str  # exact
    total: str  # rounded once
    amount_paid: str
    amount_refunded: str
    amount_due: str
    credit_notes: tuple[DocumentCreditNote, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "status": self.status,
            "platform": self.platform,
            "external_id": self.external_id,
            "plan": self.plan,
            "currency": self.currency,
            "period_start": self.period_start.isoformat(),
            "period_end": self.period_end.isoformat(),
            "arrears_start": self.arrears_start.isoformat(),
            "arrears_end": self.arrears_end.isoformat(),
            "issued_at": self.issued_at.isoformat() if self.issued_at else None,
            "due_at": self.due_at.isoformat() if self.due_at else None,
            "lines": [
                {
                    "kind": line.kind,
                    "description": line.description,
                    "quantity": line.quantity,
                    "unit_price": line.unit_price,
                    "amount": line.amount,
                    "period_start": line.period_start.isoformat(),
                    "period_end": line.period_end.isoformat(),
                }
                for line in self.lines
            ],
            "subtotal": self.subtotal,
            "total": self.total,
            "amount_paid": self.amount_paid,
            "amount_refunded": self.amount_refunded,
            "amount_due": self.amount_due,
            "credit_notes": [
                {"number": n.number, "amount": n.amount, "reason": n.reason, "issued_at": n.issued_at.isoformat()}
                for n in self.credit_notes
            ],
        }


def _exact(value: Decimal) -> str:
    return format(value.normalize(), "f") if value != ZERO else "0"


def invoice_document(view: InvoiceView, *, issuer: str, paid: Decimal, refunded: Decimal) -> InvoiceDocument:
    invoice, currency = view.invoice, view.invoice.currency
    due = ZERO if invoice.status in (InvoiceStatus.PAID, InvoiceStatus.VOID) else max(ZERO, invoice.total - paid)
    return InvoiceDocument(
        number=invoice.number,
        status=invoice.status,
        issuer=issuer,
        platform=view.platform_name,
        external_id=view.external_id,
        plan=invoice.plan_code,
        currency=currency,
        period_start=invoice.period_start,
        period_end=invoice.period_end,
        arrears_start=invoice.arrears_start,
        arrears_end=invoice.arrears_end,
        issued_at=invoice.issued_at,
        due_at=invoice.due_at,
        lines=tuple(
            DocumentLine(
                kind=line.kind,
                description=line.description,
                quantity=_exact(line.quantity),
                unit_price=line_amount_text(line.unit_price, currency),
                amount=line_amount_text(line.amount, currency),
                period_start=line.period_start,
                period_end=line.period_end,
            )
            for line in view.lines
        ),
        subtotal=line_amount_text(invoice.subtotal, currency),
        total=money_text(invoice.total, currency),
        amount_paid=money_text(paid, currency),
        amount_refunded=money_text(refunded, currency),
        amount_due=money_text(due, currency),
        credit_notes=tuple(_note(note, currency) for note in view.credit_notes),
    )


def _note(note: CreditNote, currency: str) -> DocumentCreditNote:
    return DocumentCreditNote(note.number, money_text(note.amount, currency), note.reason, note.issued_at)


def preview_document(preview: Preview, *, issuer: str, platform: str, external_id: str) -> InvoiceDocument:
    computed: ComputedInvoice = preview.computed
    currency = computed.currency
    return InvoiceDocument(
        number=None,
        status=InvoiceStatus.DRAFT.value,
        issuer=issuer,
        platform=platform,
        external_id=external_id,
        plan=preview.plan_code,
        currency=currency,
        period_start=preview.period.start,
        period_end=preview.period.end,
        arrears_start=preview.arrears.start,
        arrears_end=preview.arrears.end,
        issued_at=None,
        due_at=None,
        lines=tuple(
            DocumentLine(
                kind=line.kind.value,
                description=line.description,
                quantity=_exact(line.quantity),
                unit_price=line_amount_text(line.unit_price, currency),
                amount=line_amount_text(line.amount, currency),
                period_start=line.period_start,
                period_end=line.period_end,
            )
            for line in computed.lines
        ),
        subtotal=line_amount_text(computed.subtotal, currency),
        total=money_text(computed.total, currency),
        amount_paid=money_text(ZERO, currency),
        amount_refunded=money_text(ZERO, currency),
        amount_due=money_text(computed.total, currency),
        credit_notes=(),
    )
