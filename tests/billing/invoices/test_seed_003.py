"""Seed 003's worked invoice, number for number, issued through the storage on SQLite and PostgreSQL.

A Growth Monthly workspace (150 included credits a month, $399, flex credits at $3) whose billing cycle starts on
the 15th, with 20 prepaid credits bought on January 30th. From April 15th to May 14th it uses 200 credits: 150
included, 20 prepaid, 30 flex. Its May 15th invoice: "$399 for the Monthly Plan from May 15th-June 14th" and "$90
for the 30 flex credits from April 15th-May 14th". The PDF carries the same figures.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from license_server.auth.tokens import Actor
from license_server.billing.credits import service as credits
from license_server.billing.credits.burndown import CreditKind
from license_server.billing.invoices.models import InvoiceStatus
from license_server.events.models import Event
from license_server.runtime import Runtime
from tests.billing.credits.conftest import AccountFactory
from tests.billing.invoices.conftest import debit, invoices_of, issue, pdf_text
from tests.conftest import MovableClock

pytestmark = pytest.mark.usefixtures("backend")

ANCHOR = datetime(2026, 1, 15, tzinfo=UTC)
APRIL_15 = datetime(2026, 4, 15, tzinfo=UTC)
MAY_15 = datetime(2026, 5, 15, tzinfo=UTC)
JUNE_15 = datetime(2026, 6, 15, tzinfo=UTC)


async def _workspace(runtime: Runtime, make_account: AccountFactory, clock: MovableClock, actor: Actor) -> uuid.UUID:
    clock.now = ANCHOR
    account = await make_account(included_credits="150", anchor=ANCHOR, flex_enabled=True)
    clock.now = datetime(2026, 1, 30, 10, tzinfo=UTC)
    async with runtime.session_factory() as session:
        await credits.grant_credits(
            session,
            state=runtime.billing,
            actor=actor,
            account_id=account,
            kind=CreditKind.PREPAID,
            amount=Decimal(20),
            idempotency_key="purchase-jan-30",
            clock=clock,
        )
    return account


async def _use(runtime: Runtime, clock: MovableClock, account: uuid.UUID, total: int) -> Decimal:
    flex = Decimal(0)
    for day in range(total // 10):
        clock.now = APRIL_15 + timedelta(days=day, hours=12)
        flex += await debit(runtime, clock, account, Decimal(10), f"day-{day}")
    return flex


async def test_the_may_15_invoice_bills_399_for_the_plan_and_90_for_30_flex_credits(
    runtime: Runtime, make_account: AccountFactory, clock: MovableClock, actor: Actor
) -> None:
    account = await _workspace(runtime, make_account, clock, actor)
    assert await issue(runtime, APRIL_15) == 1  # April's invoice: the plan fee, nothing in arrears yet
    assert await _use(runtime, clock, account, 200) == Decimal(30)
    clock.now = MAY_15
    assert await issue(runtime, MAY_15) == 1
    assert await issue(runtime, MAY_15 + timedelta(hours=1)) == 0  # idempotent: one invoice per period

    april, may = await invoices_of(runtime, account)
    assert [(line.kind, line.amount) for line in april.lines] == [("plan", Decimal(399))]
    assert april.invoice.total == Decimal("399.00")

    invoice = may.invoice
    assert (invoice.number, april.invoice.number) == ("INV-000002", "INV-000001")  # gapless, in issue order
    assert (invoice.period_start, invoice.period_end) == (MAY_15, JUNE_15)
    assert (invoice.arrears_start, invoice.arrears_end) == (APRIL_15, MAY_15)
    assert [(line.kind, line.quantity, line.unit_price, line.amount) for line in may.lines] == [
        ("plan", Decimal(1), Decimal(399), Decimal(399)),
        ("flex", Decimal(30), Decimal(3), Decimal(90)),
    ]
    plan_line, flex_line = may.lines
    assert (plan_line.period_start, plan_line.period_end) == (MAY_15, JUNE_15)  # in advance: May 15th-June 14th
    assert (flex_line.period_start, flex_line.period_end) == (APRIL_15, MAY_15)  # in arrears: April 15th-May 14th
    assert "May 15, 2026 - Jun 14, 2026" in plan_line.description
    assert flex_line.description.startswith("30 flex credits, Apr 15, 2026 - May 14, 2026")
    assert (invoice.subtotal, invoice.total, invoice.currency) == (Decimal(489), Decimal("489.00"), "USD")
    assert invoice.status == InvoiceStatus.OPEN
    assert invoice.due_at == MAY_15 + timedelta(days=14)

    text = await pdf_text(runtime, invoice.number, MAY_15)
    assert "Invoice INV-000002" in text
    assert "399.00" in text
    assert "90.00" in text
    assert "30 flex credits" in text
    assert "Total 489.00 USD" in text

    async with runtime.session_factory() as session:
        issued = [e.data for e in await session.scalars(select(Event).where(Event.type == "invoice.issued"))]
    assert [(e["number"], e["total"]) for e in issued] == [("INV-000001", "399.00"), ("INV-000002", "489.00")]


async def test_using_only_included_credits_the_may_15_invoice_is_the_plan_alone(
    runtime: Runtime, make_account: AccountFactory, clock: MovableClock, actor: Actor
) -> None:
    """Seed 003's second example: 120 credits, all included: $399 and nothing else."""
    account = await _workspace(runtime, make_account, clock, actor)
    assert await _use(runtime, clock, account, 120) == 0
    assert await issue(runtime, MAY_15) == 1
    (may,) = await invoices_of(runtime, account)
    assert [(line.kind, line.amount) for line in may.lines] == [("plan", Decimal(399))]
    assert may.invoice.total == Decimal("399.00")
    assert "Total 399.00 USD" in await pdf_text(runtime, may.invoice.number, MAY_15)
