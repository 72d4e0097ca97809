"""Invoices: the time to render one invoice PDF, and a period rollover that issues 10,000 invoices with and without
PDFs (issue 13: with PDFs <= 2x without, rendering deferred or batched as judged).

The product issues invoices without rendering them (``issue_due_invoices``) and renders PDFs afterwards, in batches,
in the ``billing.invoices.render_pdfs`` job (and on a first download), so a rollover's issuing is the same with PDFs
on as off. Measured on one SQLite database (the product's pragmas), in this process:

1. rollover A at the first period's start: 10,000 invoices issued, no PDFs (the baseline);
2. rollover B at the next period's start: 10,000 invoices issued — what the rollover costs with PDFs deferred;
3. the render job then renders rollover B's 10,000 PDFs: the per-invoice time, and eager rendering's total (B + the
   renders) for comparison.

Each account has a Growth-like plan ($399, flex credits at $3); a third used flex credits and a third sent usage
events in the arrears window, so invoices carry one to four lines.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from bench.common import Report, Row

INVOICES = int(os.environ.get("BENCH_INVOICES", "10000"))
TARGET_RATIO = 2.0
ANCHOR = datetime(2026, 1, 15, tzinfo=UTC)


async def _fill(session_factory: object, count: int) -> None:
    from sqlalchemy import insert
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from license_server.billing.accounts.models import BillingAccount, BillingPlatform, Subscription
    from license_server.billing.credits.models import CreditMovement
    from license_server.billing.usage.models import UsageEvent
    from license_server.licenses.models import Plan

    assert isinstance(session_factory, async_sessionmaker)
    async with session_factory() as session:
        platform_id, plan_id = uuid.uuid4(), uuid.uuid4()
        session.add(
            BillingPlatform(
                id=platform_id, name="Bench Cloud", billing_enabled=True, restrictive_defaults={}, created_by="bench"
            )
        )
        session.add(
            Plan(
                id=plan_id,
                code="growth",
                name="Growth Monthly",
                description="",
                terms={},
                billing={"price": "399", "included_credits": "150", "flex_credit_price": "3"},
            )
        )
        await session.flush()
        accounts, subscriptions, movements, events = [], [], [], []
        for n in range(count):
            account_id = uuid.uuid4()
            anchor = ANCHOR + timedelta(minutes=n % 600)
            accounts.append(
                {
                    "id": account_id,
                    "platform_id": platform_id,
                    "external_id": f"ws-{n}",
                    "flex_enabled": True,
                    "created_at": anchor,
                }
            )
            subscriptions.append(
                {
                    "id": uuid.uuid4(),
                    "account_id": account_id,
                    "plan_id": plan_id,
                    "status": "active",
                    "anchor_at": anchor,
                    "trial_ends_at": None,
                    "canceled_at": None,
                    "created_at": anchor,
                    "updated_at": anchor,
                }
            )
            for month in (1, 2):  # usage in the windows of both rollovers
                at = anchor.replace(month=anchor.month + month) - timedelta(days=3)
                if n % 3 == 0:
                    movements.append(
                        {
                            "account_id": account_id,
                            "kind": "debit",
                            "amount": Decimal(-40),
                            "flex": Decimal(n % 40),
                            "grant_id": None,
                            "idempotency_key": f"d{month}",
                            "request_digest": "0" * 64,
                            "description": "",
                            "metadata": {},
                            "actor": None,
                            "occurred_at": at,
                        }
                    )
                if n % 3 == 1:
                    items = [
                        {"type": "llm", "name": "gpt-4o", "cost": "0.0123"},
                        {"type": "tool", "name": "search", "cost": "0.5"},
                    ]
                    events.append(
                        {
                            "account_id": account_id,
                            "event_id": f"e{month}",
                            "occurred_at": at,
                            "agent": "a",
                            "app": None,
                            "line_items": items,
                            "cost": Decimal("0.5123"),
                            "request_digest": "0" * 64,
                            "created_at": at,
                        }
                    )
        for table, rows in (
            (BillingAccount, accounts),
            (Subscription, subscriptions),
            (CreditMovement, movements),
            (UsageEvent, events),
        ):
            for start in range(0, len(rows), 2000):
                await session.execute(insert(table), rows[start : start + 2000])
        await session.commit()


async def _measure(data_dir: Path, count: int) -> dict[str, float]:
    from sqlalchemy import text

    from license_server.billing.invoices import service
    from license_server.billing.invoices.rendering import render_missing_pdfs
    from license_server.config import Settings
    from license_server.db.session import create_engine, create_session_factory

    settings = Settings(data_dir=data_dir)
    engine = create_engine(settings)
    factory = create_session_factory(engine)
    try:
        await _fill(factory, count)
        figures: dict[str, float] = {}
        # Rollover A: every account's February period begins (all anchors are on Jan 15th, within ten hours).
        async with factory() as session:
            started = time.perf_counter()
            issued = await service.issue_due_invoices(session, now=datetime(2026, 2, 15, 12, tzinfo=UTC))
            figures["issue_a"] = time.perf_counter() - started
        assert issued == count, issued
        # Rollover A's invoices are marked as rendered (an empty placeholder, bench only), so that the render job
        # after rollover B finds exactly B's invoices.
        async with factory() as session:
            await session.execute(
                text(
                    "INSERT INTO billing_invoice_pdfs (invoice_id, content, rendered_at) "
                    "SELECT id, x'', issued_at FROM billing_invoices"
                )
            )
            await session.commit()
        async with factory() as session:
            started = time.perf_counter()
            issued = await service.issue_due_invoices(session, now=datetime(2026, 3, 15, 12, tzinfo=UTC))
            figures["issue_b"] = time.perf_counter() - started
        assert issued == count, issued
        started = time.perf_counter()
        rendered = await render_missing_pdfs(factory, issuer="Bench", now=datetime(2026, 3, 15, 13, tzinfo=UTC))
        figures["render_b"] = time.perf_counter() - started
        assert rendered == count, rendered
        return figures
    finally:
        await engine.dispose()


def run() -> Report:
    from license_server.billing.invoices.calculation import InvoiceFacts, compute_invoice
    from license_server.billing.invoices.document import DocumentLine, InvoiceDocument
    from license_server.billing.invoices.pdf import render_pdf
    from license_server.billing.periods import Period
    from license_server.config import Settings
    from license_server.db.migrate import upgrade_database

    with tempfile.TemporaryDirectory(prefix="bench-invoices-") as directory:
        upgrade_database(Settings(data_dir=Path(directory)))  # runs its own event loop: before ours
        figures = asyncio.run(_measure(Path(directory), INVOICES))

    # One PDF alone, rendered many times (no database): the renderer's own cost.
    period = Period(datetime(2026, 5, 15, tzinfo=UTC), datetime(2026, 6, 15, tzinfo=UTC))
    arrears = Period(datetime(2026, 4, 15, tzinfo=UTC), period.start)
    computed = compute_invoice(
        InvoiceFacts(
            "USD",
            "growth",
            "Growth Monthly",
            Decimal(399),
            "month",
            Decimal(3),
            period,
            period,
            arrears,
            Decimal(30),
            {"llm": Decimal("1.25")},
        )
    )
    document = InvoiceDocument(
        "INV-000001",
        "open",
        "Bench",
        "Bench Cloud",
        "ws-1",
        "growth",
        "USD",
        period.start,
        period.end,
        arrears.start,
        arrears.end,
        period.start,
        period.start + timedelta(days=14),
        tuple(
            DocumentLine(
                line.kind.value,
                line.description,
                str(line.quantity),
                str(line.unit_price),
                str(line.amount),
                line.period_start,
                line.period_end,
            )
            for line in computed.lines
        ),
        "490.25",
        "490.25",
        "0.00",
        "0.00",
        "490.25",
        (),
    )
    started, renders = time.perf_counter(), 200
    for _ in range(renders):
        render_pdf(document)
    alone_ms = (time.perf_counter() - started) / renders * 1000

    base, deferred, render = figures["issue_a"], figures["issue_b"], figures["render_b"]
    deferred_ratio, eager_ratio = deferred / base, (deferred + render) / base
    rows = [
        Row("invoice PDF, one rendered alone (fpdf2)", f"{alone_ms:.1f} ms", "—", "—", "reported", None),
        Row(
            f"invoice PDFs rendered by the job, {INVOICES:,} (SQLite)",
            f"{render / INVOICES * 1000:.1f} ms each",
            "—",
            "—",
            f"{render:.1f} s in all, read + render + store",
            None,
        ),
        Row(
            f"rollover issuing {INVOICES:,} invoices, PDFs on (rendering deferred to the job)",
            f"{deferred:.2f} s",
            "the same rollover without PDFs",
            f"{base:.2f} s",
            f"{deferred_ratio:.2f}x (target ≤ {TARGET_RATIO:g}x)",
            deferred_ratio <= TARGET_RATIO,
        ),
        Row(
            f"rollover issuing {INVOICES:,} invoices and rendering every PDF at once (eager, not shipped)",
            f"{deferred + render:.2f} s",
            "the same rollover without PDFs",
            f"{base:.2f} s",
            f"{eager_ratio:.2f}x (context: why rendering is deferred)",
            None,
        ),
    ]
    notes = [
        f"invoices: {INVOICES:,} accounts on one plan; a third with flex credits and a third with usage events in "
        "each arrears window; issuing is batched (500 subscriptions a transaction, the number series locked per "
        "batch); the render job renders 200 PDFs a transaction in a worker thread.",
    ]
    return Report(rows, notes)
