"""Console pages over HTTP (no browser): a failing page shows the API's problem code and status, in words; keyset
cursors from the links page on, and a tampered one is a 400 naming the field."""

from __future__ import annotations

import io
import re
from decimal import Decimal

import httpx
import pypdf
import pytest

from license_server.auth.tokens import Role, cli_actor
from license_server.billing.accounts import service as accounts
from license_server.billing.invoices import service as invoice_service
from license_server.billing.payments import service as payments
from license_server.licenses import service as licenses
from license_server.runtime import Runtime
from tests.console.conftest import Seeded, StaffFactory, http_sign_in


@pytest.fixture
def backend() -> str:
    return "sqlite"


async def test_a_failing_page_shows_the_problem_the_api_would_give(
    console_client: httpx.AsyncClient, make_staff: StaffFactory, seeded: Seeded, owner_headers: dict[str, str]
) -> None:
    csrf = await http_sign_in(console_client, await make_staff(Role.OWNER))
    missing = "00000000-0000-4000-8000-000000000000"
    page = await console_client.get(f"/console/licenses/{missing}")
    api = await console_client.get(f"/v1/admin/licenses/{missing}", headers=owner_headers)
    assert page.status_code == api.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert f"<code>{api.json()['code']}</code>" in page.text
    assert api.json()["detail"] in page.text
    renewal = await console_client.post(
        f"/console/licenses/{seeded.license_id}/renew", data={"_csrf": csrf, "expires_at": "2001-01-01"}
    )
    assert renewal.status_code == 400
    assert "<code>validation_error</code>" in renewal.text
    assert "<strong>expires_at</strong>" in renewal.text


async def test_keyset_cursors_page_through_accounts_and_a_tampered_cursor_is_a_400(
    console_client: httpx.AsyncClient, make_staff: StaffFactory, seeded: Seeded, runtime: Runtime
) -> None:
    async with runtime.session_factory() as db:
        for index in range(60):
            await accounts.ensure_account(db, platform_id=seeded.platform_id, external_id=f"ws-extra-{index}")
        await db.commit()
    await http_sign_in(console_client, await make_staff(Role.BILLING))
    first = await console_client.get("/console/billing/accounts")
    seen = set(re.findall(r"/accounts/(ws-[\w-]+)\"", first.text))
    after = re.search(r"accounts\?after=([\w]+)", first.text)
    assert after is not None
    second = await console_client.get(f"/console/billing/accounts?after={after.group(1)}")
    seen_next = set(re.findall(r"/accounts/(ws-[\w-]+)\"", second.text))
    assert len(seen) == 50
    assert len(seen_next) == 11
    assert not seen & seen_next
    assert "accounts?after=" not in second.text  # the last page
    tampered = await console_client.get("/console/billing/accounts?after=12x_nope")
    assert tampered.status_code == 400
    assert "<strong>after</strong>" in tampered.text


async def test_the_audit_log_pages_by_keyset_newest_first(
    console_client: httpx.AsyncClient, make_staff: StaffFactory, runtime: Runtime
) -> None:
    async with runtime.session_factory() as db:
        for index in range(55):
            await licenses.create_customer(db, actor=cli_actor(), name=f"Customer {index:02}", clock=runtime.clock)
    await http_sign_in(console_client, await make_staff(Role.VIEWER))
    first = await console_client.get("/console/audit?action=customer.created")
    before = re.search(r"audit\?before=(\d+)", first.text)
    assert before is not None
    assert first.text.count("<td>customer.created</td>") == 50
    second = await console_client.get(f"/console/audit?before={before.group(1)}&action=customer.created")
    assert second.text.count("<td>customer.created</td>") == 5
    assert "audit?before=" not in second.text


async def test_pages_forbid_framing_inline_scripts_and_caching(console_client: httpx.AsyncClient) -> None:
    page = await console_client.get("/console/sign-in")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    assert "<script>" not in page.text  # nothing inline that the policy would have to allow


async def test_the_billing_account_page_lists_its_invoices_serves_their_pdf_and_records_a_manual_payment(
    console_client: httpx.AsyncClient, make_staff: StaffFactory, seeded: Seeded, runtime: Runtime
) -> None:
    async with runtime.session_factory() as db:
        await accounts.create_subscription(
            db, actor=cli_actor(), platform_id=seeded.platform_id, external_id="ws-2", plan="team", clock=runtime.clock
        )
        assert await invoice_service.issue_due_invoices(db, now=runtime.clock()) == 2
        own = await invoice_service.list_invoices(
            db, account_id=(await accounts.get_account(db, seeded.platform_id, "ws-1")).id
        )
        other = await invoice_service.list_invoices(
            db, account_id=(await accounts.get_account(db, seeded.platform_id, "ws-2")).id
        )
    number, other_number = own[0].number, other[0].number
    csrf = await http_sign_in(console_client, await make_staff(Role.BILLING))
    page = (await console_client.get(seeded.account_path)).text
    row = re.search(rf'<tr data-number="{number}">(.*?)</tr>', page, re.S)
    assert row, page
    assert "20.00 USD" in row.group(1)
    assert "Open" in row.group(1)
    assert other_number not in page  # only this account's invoices
    assert f"Record a payment of {number}" in page

    pdf = await console_client.get(f"{seeded.account_path}/invoices/{number}/pdf")
    assert pdf.status_code == 200, pdf.text
    assert pdf.headers["content-type"] == "application/pdf"
    text = "\n".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf.content)).pages)
    assert number in text
    assert "20.00" in text
    assert (await console_client.get(f"{seeded.account_path}/invoices/{other_number}/pdf")).status_code == 404

    form = {"_csrf": csrf, "amount": "20.00", "idempotency_key": "transfer-1", "reference": "SEPA 42"}
    for _ in range(2):  # a double-submitted form records the payment once
        paid = await console_client.post(f"{seeded.account_path}/invoices/{number}/payments", data=form)
        assert paid.status_code == 303, paid.text
    page = (await console_client.get(seeded.account_path)).text
    row = re.search(rf'<tr data-number="{number}">(.*?)</tr>', page, re.S)
    assert row
    assert "Paid" in row.group(1)
    assert f"Record a payment of {number}" not in page
    async with runtime.session_factory() as db:
        view = await invoice_service.get_invoice(db, number=number)
        assert [(p.amount, p.reference) for p in await payments.list_payments(db, view.invoice.id)] == [
            (Decimal("20.00"), "SEPA 42")
        ]
    # Another account's invoice cannot be paid from this account's page.
    refused = await console_client.post(
        f"{seeded.account_path}/invoices/{other_number}/payments", data={**form, "idempotency_key": "transfer-2"}
    )
    assert refused.status_code == 404
    assert "invoice_not_found" in refused.text
