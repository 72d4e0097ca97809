"""Invoice fixtures: the credits tests' plain-row accounts (seed 003's Growth Monthly plan), and helpers to issue,
read and render invoices."""

from __future__ import annotations

import io
import uuid
from datetime import datetime
from decimal import Decimal

import pypdf
from sqlalchemy import select

from license_server.billing.credits import service as credits
from license_server.billing.invoices import service
from license_server.billing.invoices.models import Invoice
from license_server.billing.invoices.rendering import invoice_pdf
from license_server.runtime import Runtime
from tests.billing.credits.conftest import make_account  # noqa: F401 - the fixture, shared
from tests.conftest import MovableClock


async def issue(runtime: Runtime, now: datetime, account_ids: list[uuid.UUID] | None = None) -> int:
    async with runtime.session_factory() as session:
        return await service.issue_due_invoices(session, now=now, account_ids=account_ids)


async def invoices_of(runtime: Runtime, account_id: uuid.UUID) -> list[service.InvoiceView]:
    async with runtime.session_factory() as session:
        numbers = await session.scalars(
            select(Invoice.number).where(Invoice.account_id == account_id).order_by(Invoice.period_start)
        )
        return [await service.get_invoice(session, number=n) for n in numbers.all()]


async def pdf_text(runtime: Runtime, number: str, now: datetime) -> str:
    async with runtime.session_factory() as session:
        _, content = await invoice_pdf(session, number=number, account_id=None, issuer="Test Vendor", now=now)
    assert content.startswith(b"%PDF-")
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(content)).pages)


async def debit(runtime: Runtime, clock: MovableClock, account: uuid.UUID, amount: Decimal, key: str) -> Decimal:
    """Debit at the clock's time; returns the flex part."""
    async with runtime.session_factory() as session:
        result = await credits.debit_credits(
            session, state=runtime.billing, account_id=account, amount=amount, idempotency_key=key, clock=clock
        )
    return result.record.movement.flex
