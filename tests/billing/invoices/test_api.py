"""Invoices and manual payments over the admin and platform APIs, on SQLite and PostgreSQL: issue now, list, show,
PDF, preview (nothing written, the same figures the issued invoice then has), void, payments moving the invoice and
the subscription, refunds with credit notes, failed payments, idempotency, and the immutability of issued invoices."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pypdf
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.tokens import Actor, Role
from license_server.billing.accounts.models import BillingAccount, Subscription
from license_server.billing.invoices.models import Invoice, InvoiceLine
from license_server.billing.usage.models import UsageEvent
from license_server.errors import InvoiceImmutable
from license_server.events.models import Event
from license_server.runtime import Runtime
from tests.billing.conftest import Platform, PlatformFactory, subscribe, tiny_plan
from tests.conftest import MovableClock, TokenFactory

pytestmark = pytest.mark.usefixtures("backend")

ANCHOR = datetime(2026, 3, 10, 9, tzinfo=UTC)
ADMIN = "/v1/admin/billing"


async def _setup(
    client: httpx.AsyncClient,
    make_platform: PlatformFactory,
    runtime: Runtime,
    actor: Actor,
    clock: MovableClock,
    *,
    price: str = "49.99",
) -> Platform:
    clock.now = ANCHOR
    platform = await make_platform(catalogues=(tiny_plan("pro", {}, price=price, flex_credit_price="0.5"),))
    await subscribe(runtime, actor, platform, "ws-1", "pro", anchor=ANCHOR)
    await subscribe(runtime, actor, platform, "ws-2", "pro", anchor=ANCHOR)
    return platform


async def _issue(client: httpx.AsyncClient, headers: dict[str, str], platform: Platform, external_id: str) -> Any:
    response = await client.post(
        f"{ADMIN}/platforms/{platform.id}/accounts/{external_id}/invoices/issue", headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()


async def _count(runtime: Runtime, model: Any) -> int:
    async with runtime.session_factory() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def _events(runtime: Runtime, type_: str) -> list[dict[str, Any]]:
    async with runtime.session_factory() as session:
        return [e.data for e in await session.scalars(select(Event).where(Event.type == type_).order_by(Event.id))]


async def test_issue_list_show_and_pdf_over_both_apis(
    client: httpx.AsyncClient,
    make_platform: PlatformFactory,
    runtime: Runtime,
    actor: Actor,
    clock: MovableClock,
    owner_headers: dict[str, str],
) -> None:
    platform = await _setup(client, make_platform, runtime, actor, clock)
    issued = await _issue(client, owner_headers, platform, "ws-1")
    assert issued["issued"] == 1
    number = issued["invoices"][0]["number"]
    assert number == "INV-000001"
    assert (await _issue(client, owner_headers, platform, "ws-1"))["issued"] == 0  # idempotent

    listed = await client.get(platform.url("ws-1", "invoices"), headers=platform.headers)
    assert listed.status_code == 200
    assert [(i["number"], i["total"], i["status"]) for i in listed.json()["data"]["invoices"]] == [
        (number, "49.99", "open")
    ]
    shown = (await client.get(platform.url("ws-1", f"invoices/{number}"), headers=platform.headers)).json()["data"]
    assert shown["lines"] == [
        {
            "kind": "plan",
            "description": "pro (monthly plan), Mar 10, 2026 - Apr 10, 2026",  # to 09:00 on the 10th
            "quantity": "1",
            "unit_price": "49.99",
            "amount": "49.99",
            "period_start": "2026-03-10T09:00:00Z",
            "period_end": "2026-04-10T09:00:00Z",
        }
    ]
    assert (shown["total"], shown["amount_due"], shown["currency"]) == ("49.99", "49.99", "USD")
    assert shown["due_at"] == "2026-03-24T09:00:00Z"  # 14 net days

    pdf = await client.get(platform.url("ws-1", f"invoices/{number}.pdf"), headers=platform.headers)
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    text = pypdf.PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text()
    assert f"Invoice {number}" in text
    assert "Total 49.99 USD" in text
    admin_pdf = await client.get(f"{ADMIN}/invoices/{number}/pdf", headers=owner_headers)
    assert admin_pdf.content == pdf.content  # rendered once, cached

    # Another account's invoice is not found through this account, as JSON or as PDF.
    for tail in (f"invoices/{number}", f"invoices/{number}.pdf"):
        other = await client.get(platform.url("ws-2", tail), headers=platform.headers)
        assert other.status_code == 404
        assert other.json()["code"] == "invoice_not_found"
    bad = await client.get(platform.url("ws-1", "invoices/inv 1"), headers=platform.headers)
    assert (bad.status_code, bad.json()["errors"][0]["field"]) == (400, "number")
    assert (await client.get(platform.url("ws-1", "invoices"))).status_code == 401

    admin_list = await client.get(
        f"{ADMIN}/invoices", params={"platform_id": platform.id, "external_id": "ws-1"}, headers=owner_headers
    )
    assert [i["number"] for i in admin_list.json()] == [number]
    admin_show = await client.get(f"{ADMIN}/invoices/{number}", headers=owner_headers)
    assert admin_show.json()["total"] == "49.99"
    assert [e["number"] for e in await _events(runtime, "invoice.issued")] == [number]


async def test_preview_writes_nothing_and_matches_the_invoice_then_issued(
    client: httpx.AsyncClient,
    make_platform: PlatformFactory,
    runtime: Runtime,
    actor: Actor,
    clock: MovableClock,
    owner_headers: dict[str, str],
) -> None:
    platform = await _setup(client, make_platform, runtime, actor, clock)
    await _issue(client, owner_headers, platform, "ws-1")
    clock.now = ANCHOR + timedelta(days=5)
    sent = await client.post(
        platform.url("ws-1", "events"),
        headers=platform.headers,
        json={
            "events": [
                {
                    "id": "run-1",
                    "agent": "a",
                    "line_items": [
                        {"type": "llm", "name": "gpt", "cost": "1.005"},
                        {"type": "tool", "name": "search", "cost": "0.0001"},
                    ],
                }
            ]
        },
    )
    assert sent.status_code == 201, sent.text
    before = await _count(runtime, Invoice)
    preview = await client.get(platform.url("ws-1", "invoices/preview"), headers=platform.headers)
    assert preview.status_code == 200, preview.text
    (draft,) = preview.json()["data"]["invoices"]
    assert (draft["number"], draft["status"]) == (None, "draft")
    assert [(line["kind"], line["amount"]) for line in draft["lines"]] == [
        ("plan", "49.99"),
        ("metered", "1.005"),
        ("metered", "0.0001"),
    ]
    assert (draft["subtotal"], draft["total"]) == ("50.9951", "51.00")  # lines exact, the total rounded once
    assert await _count(runtime, Invoice) == before
    admin = await client.get(f"{ADMIN}/platforms/{platform.id}/accounts/ws-1/invoices/preview", headers=owner_headers)
    assert admin.json()[0]["total"] == "51.00"

    clock.now = datetime(2026, 4, 10, 9, tzinfo=UTC)  # the next period begins: the preview is issued as it was
    assert (await _issue(client, owner_headers, platform, "ws-1"))["issued"] == 1
    issued = (await client.get(platform.url("ws-1", "invoices/INV-000002"), headers=platform.headers)).json()["data"]
    assert [line["amount"] for line in issued["lines"]] == [line["amount"] for line in draft["lines"]]
    assert issued["total"] == draft["total"]


async def test_manual_payments_move_the_invoice_and_the_subscription(
    client: httpx.AsyncClient,
    make_platform: PlatformFactory,
    runtime: Runtime,
    actor: Actor,
    clock: MovableClock,
    owner_headers: dict[str, str],
) -> None:
    platform = await _setup(client, make_platform, runtime, actor, clock)
    number = (await _issue(client, owner_headers, platform, "ws-1"))["invoices"][0]["number"]
    url = f"{ADMIN}/invoices/{number}"

    failed = await client.post(
        f"{url}/failures", headers=owner_headers, json={"idempotency_key": "f1", "reason": "card declined"}
    )
    assert failed.status_code == 201, failed.text
    assert [e["number"] for e in await _events(runtime, "payment.failed")] == [number]
    assert await _subscription_status(runtime, "ws-1") == "past_due"

    clock.advance(timedelta(minutes=1))  # the payments list is in time order
    first = await client.post(f"{url}/payments", headers=owner_headers, json={"amount": "20", "idempotency_key": "p1"})
    assert first.status_code == 201, first.text
    assert (first.json()["invoice"]["status"], first.json()["invoice"]["amount_due"]) == ("open", "29.99")
    assert await _subscription_status(runtime, "ws-1") == "past_due"
    replay = await client.post(f"{url}/payments", headers=owner_headers, json={"amount": "20", "idempotency_key": "p1"})
    assert (replay.status_code, replay.json()["replayed"]) == (201, True)
    reused = await client.post(f"{url}/payments", headers=owner_headers, json={"amount": "21", "idempotency_key": "p1"})
    assert (reused.status_code, reused.json()["code"]) == (409, "idempotency_key_reused")
    too_much = await client.post(
        f"{url}/payments", headers=owner_headers, json={"amount": "30", "idempotency_key": "p2"}
    )
    assert (too_much.status_code, too_much.json()["code"]) == (409, "invoice_state_conflict")
    float_amount = await client.post(
        f"{url}/payments", headers=owner_headers, json={"amount": 29.99, "idempotency_key": "p2"}
    )
    assert (float_amount.status_code, float_amount.json()["errors"][0]["field"]) == (400, "amount")
    cents = await client.post(
        f"{url}/payments", headers=owner_headers, json={"amount": "29.991", "idempotency_key": "p2"}
    )
    assert (cents.status_code, cents.json()["errors"][0]["field"]) == (400, "amount")

    clock.advance(timedelta(minutes=1))  # the payments list is in time order
    rest = await client.post(
        f"{url}/payments", headers=owner_headers, json={"amount": "29.99", "idempotency_key": "p2"}
    )
    assert rest.status_code == 201, rest.text
    assert (rest.json()["invoice"]["status"], rest.json()["invoice"]["amount_due"]) == ("paid", "0.00")
    assert await _subscription_status(runtime, "ws-1") == "active"
    assert [e["number"] for e in await _events(runtime, "invoice.paid")] == [number]

    clock.advance(timedelta(minutes=1))  # the payments list is in time order
    refund = await client.post(
        f"{url}/refunds", headers=owner_headers, json={"amount": "10", "idempotency_key": "r1", "reason": "goodwill"}
    )
    assert refund.status_code == 201, refund.text
    body = refund.json()
    assert (body["payment"]["kind"], body["payment"]["amount"]) == ("refund", "-10")
    assert body["invoice"]["credit_notes"][0]["number"] == "CN-000001"
    assert (body["invoice"]["status"], body["invoice"]["amount_refunded"]) == ("paid", "10.00")
    over = await client.post(
        f"{url}/refunds", headers=owner_headers, json={"amount": "40", "idempotency_key": "r2", "reason": "x"}
    )
    assert (over.status_code, over.json()["code"]) == (409, "invoice_state_conflict")
    listed = await client.get(f"{url}/payments", headers=owner_headers)
    assert [(p["kind"], p["amount"]) for p in listed.json()] == [
        ("failure", "0"),
        ("payment", "20"),
        ("payment", "29.99"),
        ("refund", "-10"),
    ]

    paid_void = await client.post(f"{url}/void", headers=owner_headers, json={"reason": "x"})
    assert (paid_void.status_code, paid_void.json()["code"]) == (409, "invoice_state_conflict")


async def test_void_an_open_invoice_and_the_viewer_cannot(
    client: httpx.AsyncClient,
    make_platform: PlatformFactory,
    runtime: Runtime,
    actor: Actor,
    clock: MovableClock,
    owner_headers: dict[str, str],
    make_token: TokenFactory,
) -> None:
    platform = await _setup(client, make_platform, runtime, actor, clock)
    number = (await _issue(client, owner_headers, platform, "ws-1"))["invoices"][0]["number"]
    viewer = {"Authorization": f"Bearer {await make_token(Role.VIEWER)}"}
    assert (
        await client.post(f"{ADMIN}/invoices/{number}/void", headers=viewer, json={"reason": "x"})
    ).status_code == 403
    voided = await client.post(f"{ADMIN}/invoices/{number}/void", headers=owner_headers, json={"reason": "duplicate"})
    assert (voided.status_code, voided.json()["status"], voided.json()["amount_due"]) == (200, "void", "0.00")
    again = await client.post(f"{ADMIN}/invoices/{number}/void", headers=owner_headers, json={"reason": "duplicate"})
    assert again.json()["status"] == "void"
    assert len(await _events(runtime, "invoice.voided")) == 1
    pay = await client.post(
        f"{ADMIN}/invoices/{number}/payments", headers=owner_headers, json={"amount": "1", "idempotency_key": "p"}
    )
    assert (pay.status_code, pay.json()["code"]) == (409, "invoice_state_conflict")
    # A void invoice still holds its period: the job does not issue it again.
    assert (await _issue(client, owner_headers, platform, "ws-1"))["issued"] == 0


async def test_an_issued_invoice_cannot_change(
    client: httpx.AsyncClient,
    make_platform: PlatformFactory,
    runtime: Runtime,
    actor: Actor,
    clock: MovableClock,
    owner_headers: dict[str, str],
) -> None:
    platform = await _setup(client, make_platform, runtime, actor, clock)
    number = (await _issue(client, owner_headers, platform, "ws-1"))["invoices"][0]["number"]
    edits: list[tuple[str, str, object]] = [
        ("invoice", "total", Decimal("1.00")),
        ("invoice", "currency", "EUR"),
        ("invoice", "period_start", ANCHOR - timedelta(days=1)),
        ("line", "amount", Decimal(1)),
        ("line", "description", "something else"),
    ]
    for target, attribute, value in edits:
        async with runtime.session_factory() as session:
            invoice, line = await _invoice_and_line(session, number)
            setattr(invoice if target == "invoice" else line, attribute, value)
            with pytest.raises(InvoiceImmutable):
                await session.commit()
    for target in ("invoice", "line"):
        async with runtime.session_factory() as session:
            invoice, line = await _invoice_and_line(session, number)
            await session.delete(invoice if target == "invoice" else line)
            with pytest.raises(InvoiceImmutable):
                await session.commit()
    shown = (await client.get(f"{ADMIN}/invoices/{number}", headers=owner_headers)).json()
    assert (shown["total"], shown["currency"], shown["lines"][0]["amount"]) == ("49.99", "USD", "49.99")
    # Usage recorded late for a billed window does not reach the issued invoice: it is billed on the next one, once.
    async with runtime.session_factory() as session:
        account_id = await session.scalar(select(Invoice.account_id).where(Invoice.number == number))
        session.add(
            UsageEvent(
                account_id=account_id,
                event_id="late",
                occurred_at=ANCHOR - timedelta(days=1),
                agent=None,
                app=None,
                line_items=[{"type": "llm", "name": "m", "cost": "5"}],
                cost=Decimal(5),
                request_digest="0" * 64,
                created_at=ANCHOR + timedelta(minutes=1),  # recorded after the invoice of its window was issued
            )
        )
        await session.commit()
    assert (await client.get(f"{ADMIN}/invoices/{number}", headers=owner_headers)).json()["total"] == "49.99"
    clock.now = datetime(2026, 4, 10, 9, tzinfo=UTC)
    assert (await _issue(client, owner_headers, platform, "ws-1"))["issued"] == 1
    following = (await client.get(f"{ADMIN}/invoices/INV-000002", headers=owner_headers)).json()
    assert [(line["kind"], line["amount"]) for line in following["lines"]] == [("plan", "49.99"), ("metered", "5.00")]
    clock.now = datetime(2026, 5, 10, 9, tzinfo=UTC)  # billed once: not again on the invoice after
    assert (await _issue(client, owner_headers, platform, "ws-1"))["issued"] == 1
    third = (await client.get(f"{ADMIN}/invoices/INV-000003", headers=owner_headers)).json()
    assert [line["kind"] for line in third["lines"]] == ["plan"]


async def _invoice_and_line(session: AsyncSession, number: str) -> tuple[Invoice, InvoiceLine]:
    invoice = (await session.scalars(select(Invoice).where(Invoice.number == number))).one()
    line = (await session.scalars(select(InvoiceLine).where(InvoiceLine.invoice_id == invoice.id))).first()
    assert line is not None
    return invoice, line


async def _subscription_status(runtime: Runtime, external_id: str) -> str:
    async with runtime.session_factory() as session:
        status = await session.scalar(
            select(Subscription.status)
            .join(BillingAccount, BillingAccount.id == Subscription.account_id)
            .where(BillingAccount.external_id == external_id)
        )
    assert status is not None
    return str(status)
