"""The portal's pages over HTTP: each shows what the services say, in seed 002's and seed 004's words."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import jwt
from litestar import Litestar

from license_server.auth.tokens import Actor
from license_server.billing.invoices import service as invoice_service
from license_server.console.portal.interfaces import (
    PORTAL_STATE_KEY,
    PortalServices,
)
from license_server.offline import files
from license_server.runtime import Runtime
from tests.billing.conftest import subscribe
from tests.conftest import MovableClock
from tests.console.portal.conftest import (
    APPS,
    KNOWLEDGE_BASES,
    MEMBERS,
    MESSAGES,
    HostedAccount,
    LinkFactory,
    SelfHosted,
    csrf_of,
    issue_invoices,
    pdf_text,
    signed_in,
)
from tests.deployments.conftest import activate

PDF_LINK = re.compile(r'href="/portal/invoices/([0-9a-f-]{36})/pdf"')


def _row(html: str, key: str) -> str:
    match = re.search(rf'<tr data-key="{re.escape(key)}">(.*?)</tr>', html, re.S)
    assert match, f"no row for {key}"
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", match.group(1))).strip()


def _section(html: str, heading_id: str) -> str:
    start = html.index(f'id="{heading_id}"')
    end = html.find("</section>", start)
    return html[start:end]


async def test_usage_shows_seed_004s_two_sections_with_the_numbers_of_the_limits_report(
    client: httpx.AsyncClient, web: httpx.AsyncClient, hosted: HostedAccount, account_link: LinkFactory
) -> None:
    report = (
        await client.get(hosted.platform.url(hosted.external_id, "limits"), headers=hosted.platform.headers)
    ).json()["data"]
    await signed_in(web, await account_link("billing:read"))
    page = await web.get("/portal/usage")
    assert page.status_code == 200, page.text
    html = page.text
    total, monthly = _section(html, "total-limits"), _section(html, "monthly-limits")
    assert "Total resource limits" in total
    assert "Monthly usage limits" in monthly
    period_end = datetime.fromisoformat(report["period_end"]).strftime("%Y-%m-%d")
    assert f"Resets {period_end}" in monthly
    for entry in report["limits"]:
        row = _row(total if entry["group"] == "total" else monthly, entry["key"])
        if "limit" not in entry:
            assert "Unlimited" in row, row
        elif entry["limit"] == 0:
            assert row.endswith("Not available on plan"), row
        else:
            assert f"{entry['used']} / {entry['limit']}" in row, row
    assert "3 / 10" in _row(total, APPS)
    assert "Not available on plan" in _row(total, KNOWLEDGE_BASES)
    assert "Unlimited" in _row(total, MEMBERS)
    assert "7 / 100" in _row(monthly, MESSAGES)
    assert '<progress id="bar-1-apps" max="10" value="3"' in html


async def test_the_usage_chart_breaks_credits_down_by_day_agent_and_line_item(
    web: httpx.AsyncClient, account_link: LinkFactory, runtime: Runtime
) -> None:
    await signed_in(web, await account_link())
    by_agent = (await web.get("/portal/usage?by=agent")).text
    # run-1: 10 gpt tokens at 0.5 and one search at 2 = 7; run-2: storage 1.25
    assert "<svg" in by_agent
    assert "<td>support-bot</td><td>7</td>" in by_agent
    assert "<td>sales-bot</td><td>1.25</td>" in by_agent
    by_item = (await web.get("/portal/usage?by=line_item")).text
    for item, cost in (("llm", "5"), ("tool", "2"), ("storage", "1.25")):
        assert f"<td>{item}</td><td>{cost}</td>" in by_item
    by_day = (await web.get("/portal/usage?by=day")).text
    assert f"<td>{runtime.clock().date().isoformat()}</td><td>8.25</td>" in by_day
    bad = await web.get("/portal/usage?by=hour")
    assert bad.status_code == 400
    assert "validation_error" in bad.text  # the API's code, on a page
    assert "text/html" in bad.headers["content-type"]


async def test_the_overview_shows_plan_status_and_next_billing_date(
    web: httpx.AsyncClient, account_link: LinkFactory, runtime: Runtime
) -> None:
    await signed_in(web, await account_link())
    html = (await web.get("/portal/overview")).text
    assert re.search(r'id="plan">pro<', html)
    assert re.search(r'id="status" class="standing-active">Active<', html)
    # anchored at the subscription's start (the test clock, 2026-06-01): the period ends a month later
    assert 'id="next-billing">2026-07-01<' in html
    assert "banner" not in html


async def test_a_trial_shows_its_countdown_banner(
    client: httpx.AsyncClient, web: httpx.AsyncClient, hosted: HostedAccount, runtime: Runtime, actor: Actor
) -> None:
    await subscribe(runtime, actor, hosted.platform, "ws-trial", "pro", trial_days=14)
    made = await client.post(
        hosted.platform.url("ws-trial", "portal-sessions"), headers=hosted.platform.headers, json={"role": "admin"}
    )
    await signed_in(web, httpx.URL(made.json()["url"]).path)
    html = (await web.get("/portal/overview")).text
    assert "Trial: 14 days left." in html
    assert re.search(r'id="status" class="standing-trial">Trial<', html)


async def test_past_due_shows_the_banner_with_the_payment_link(
    client: httpx.AsyncClient,
    web: httpx.AsyncClient,
    hosted: HostedAccount,
    account_link: LinkFactory,
    owner_headers: dict[str, str],
    runtime: Runtime,
) -> None:
    # The period's invoice is issued and its payment fails (as staff record it): the subscription is past due.
    assert await issue_invoices(runtime) == 1
    listed = await client.get(hosted.platform.url(hosted.external_id, "invoices"), headers=hosted.platform.headers)
    [invoice] = listed.json()["data"]["invoices"]
    failed = await client.post(
        f"/v1/admin/billing/invoices/{invoice['number']}/failures",
        headers=owner_headers,
        json={"idempotency_key": "fail-1", "reason": "card declined"},
    )
    assert failed.status_code == 201, failed.text
    await signed_in(web, await account_link(payment_url="https://pay.example.com/update"))
    html = (await web.get("/portal/overview")).text
    assert "Your payment is past due." in html
    assert '<a href="https://pay.example.com/update">Update your payment method</a>' in html
    assert re.search(r'id="status" class="standing-past_due">Past Due<', html)


async def test_credits_show_the_balance_by_kind_and_the_burn_down(
    client: httpx.AsyncClient,
    web: httpx.AsyncClient,
    hosted: HostedAccount,
    account_link: LinkFactory,
    owner_headers: dict[str, str],
) -> None:
    admin = f"/v1/admin/billing/platforms/{hosted.platform.id}/accounts/{hosted.external_id}/credits"
    granted = await client.post(
        f"{admin}/grants", headers=owner_headers, json={"kind": "prepaid", "amount": "100", "idempotency_key": "g-1"}
    )
    assert granted.status_code == 201, granted.text
    debited = await client.post(
        hosted.platform.url(hosted.external_id, "credits/debits"),
        headers=hosted.platform.headers,
        json={"amount": "30.5", "idempotency_key": "d-1", "description": "run 42"},
    )
    assert debited.status_code == 201, debited.text
    await signed_in(web, await account_link(payment_url="https://pay.example.com/credits"))
    html = (await web.get("/portal/credits")).text
    assert '<strong id="balance">69.5</strong>' in html
    assert '<tr data-kind="prepaid"><td>Prepaid</td><td>69.5</td></tr>' in html
    assert "30.5 prepaid" in html
    assert "run 42" in html
    assert 'href="https://pay.example.com/credits">Purchase credits</a>' in html


async def test_invoices_list_the_accounts_issued_invoices_flag_past_due_and_serve_the_real_pdf(
    web: httpx.AsyncClient,
    hosted: HostedAccount,
    account_link: LinkFactory,
    runtime: Runtime,
    actor: Actor,
    clock: MovableClock,
) -> None:
    await signed_in(web, await account_link())
    assert "No invoices yet." in (await web.get("/portal/invoices")).text
    await subscribe(runtime, actor, hosted.platform, "ws-other", "pro")
    assert await issue_invoices(runtime) == 2  # this account's and another account's of the same platform

    html = (await web.get("/portal/invoices")).text
    ids = PDF_LINK.findall(html)
    assert len(ids) == 1, html  # only the visitor's own account's invoice
    number = re.search(r"<td>(INV-\d{6})</td>", html)
    assert number, html
    assert "59.00 USD" in html
    assert "Open" in html
    assert "past-due-flag" not in html

    pdf = await web.get(f"/portal/invoices/{ids[0]}/pdf")
    assert pdf.status_code == 200, pdf.text
    assert pdf.headers["content-type"] == "application/pdf"
    text = pdf_text(pdf.content)
    assert number.group(1) in text
    assert "59.00" in text

    async with runtime.session_factory() as session:
        others = [invoice.id for invoice in await invoice_service.list_invoices(session) if str(invoice.id) not in ids]
    assert len(others) == 1
    other = await web.get(f"/portal/invoices/{others[0]}/pdf")
    assert other.status_code == 404
    assert "invoice_not_found" in other.text

    # Fourteen days on (the default payment terms) the open invoice is due: billing/invoices' rule says past due.
    clock.advance(timedelta(days=14))
    await signed_in(web, await account_link(payment_url="https://pay.example.com/update"))
    html = (await web.get("/portal/invoices")).text
    assert '<tr class="past-due">' in html
    assert "Past due" in html
    assert 'href="https://pay.example.com/update">update payment</a>' in html


async def test_plans_compare_side_by_side_and_change_through_the_subscriptions_lifecycle(
    app: Litestar,
    web: httpx.AsyncClient,
    account_link: LinkFactory,
    hosted: HostedAccount,
    runtime: Runtime,
    actor: Actor,
) -> None:
    from license_server.billing.accounts import service as accounts
    from license_server.billing.plans import service as plans
    from tests.billing.conftest import tiny_plan

    async with runtime.session_factory() as db:
        await plans.import_catalogue(
            db, actor=actor, catalogue=tiny_plan("free", {APPS: {"kind": "total", "limit": 1}}), clock=runtime.clock
        )
    await signed_in(web, await account_link())
    html = (await web.get("/portal/plans")).text
    assert html.index(">free<") < html.index('>pro <span class="muted">(current)')  # cheapest first
    assert "Not available on plan" in html
    assert "Unlimited" in html
    assert "59 USD / month" in html
    assert "Switch to free" in html
    assert "Switch to pro" not in html

    async def pending_plan() -> tuple[str, str | None]:
        async with runtime.session_factory() as db:
            account = await accounts.get_account(db, uuid.UUID(hosted.platform.id), hosted.external_id)
            [view] = await accounts.list_subscriptions(db, account_id=account.id)
            pending = view.subscription.pending_plan_id
            return view.plan_code, None if pending is None else str(pending)

    # A downgrade (free costs less than pro) waits for the period's end: still pro, free pending.
    changed = await web.post(
        "/portal/plans/change", data={"_csrf": csrf_of(html), "plan": "free", "idempotency_key": "k-1"}
    )
    assert changed.status_code == 303, changed.text
    plan, pending = await pending_plan()
    assert (plan, pending is not None) == ("pro", True)
    report = (await web.get("/portal/usage")).text
    assert "10" in report  # pro's app limit still stands
    # Asking for the current plan again withdraws the scheduled downgrade (the lifecycle's rule).
    html = (await web.get("/portal/plans")).text
    again = await web.post(
        "/portal/plans/change", data={"_csrf": csrf_of(html), "plan": "pro", "idempotency_key": "k-2"}
    )
    assert again.status_code == 303, again.text
    assert await pending_plan() == ("pro", None)


async def test_a_server_without_plan_changes_compares_plans_without_the_buttons(
    app: Litestar, web: httpx.AsyncClient, account_link: LinkFactory, hosted: HostedAccount
) -> None:
    app.state[PORTAL_STATE_KEY] = PortalServices()
    await signed_in(web, await account_link())
    html = (await web.get("/portal/plans")).text
    assert "Switch to" not in html
    assert "contact your vendor" in html
    refused = await web.post("/portal/plans/change", data={"_csrf": csrf_of(html), "plan": "pro"})
    assert refused.status_code == 409
    assert "plan_changes_unavailable" in refused.text


async def test_a_customer_sees_their_licenses_activations_and_downloads_the_document(
    client: httpx.AsyncClient,
    web: httpx.AsyncClient,
    customer_link: LinkFactory,
    self_hosted: SelfHosted,
    runtime: Runtime,
) -> None:
    activated = await activate(client, self_hosted.license_key, fingerprint="fp-portal", hostname="prod-1")
    assert activated.status_code in (200, 201), activated.text
    await signed_in(web, await customer_link("admin"))
    home = await web.get("/portal/")
    assert home.headers["location"] == "/portal/licenses"
    listing = (await web.get("/portal/licenses")).text
    assert str(self_hosted.license_id) in listing
    detail = (await web.get(f"/portal/licenses/{self_hosted.license_id}")).text
    assert "prod-1" in detail
    assert "fp-portal" in detail
    document = await web.get(f"/portal/licenses/{self_hosted.license_id}/document")
    assert document.status_code == 200
    claims = jwt.decode(document.text, options={"verify_signature": False})
    assert claims["license_id"] == str(self_hosted.license_id) or str(self_hosted.license_id) in str(claims)
    assert (await web.get("/portal/overview")).status_code == 404  # not a billing account's session
    assert (await web.get(f"/portal/licenses/{uuid.uuid4()}")).status_code == 404


async def test_an_offline_request_for_an_own_license_is_answered_and_another_customers_is_not(
    web: httpx.AsyncClient, customer_link: LinkFactory, self_hosted: SelfHosted, make_license: Any, runtime: Runtime
) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    await signed_in(web, await customer_link("owner"))
    form = (await web.get("/portal/offline")).text
    token = csrf_of(form)
    request = files.build_activation_request(
        install_key=Ed25519PrivateKey.generate(),
        license_key=self_hosted.license_key,
        fingerprint="air-1",
        hostname="vault",
        now=runtime.clock(),
    )
    answered = await web.post(
        "/portal/offline", data={"_csrf": token}, files={"request": ("request.json", request, "application/json")}
    )
    assert answered.status_code == 200, answered.text
    assert answered.text.startswith(files.ARMOR_BEGIN)
    assert f"license-{self_hosted.license_id}.lic" in answered.headers["content-disposition"]
    detail = (await web.get(f"/portal/licenses/{self_hosted.license_id}")).text
    assert "air-1" in detail  # the answer took a seat, shown as an activation

    other = await make_license()
    foreign = files.build_activation_request(
        install_key=Ed25519PrivateKey.generate(),
        license_key=other.key,
        fingerprint="air-2",
        hostname="x",
        now=runtime.clock(),
    )
    refused = await web.post(
        "/portal/offline", data={"_csrf": token}, files={"request": ("request.json", foreign, "application/json")}
    )
    assert refused.status_code == 404
    assert "license_key_not_found" in refused.text
    garbled = await web.post(
        "/portal/offline", data={"_csrf": token}, files={"request": ("request.json", b"{}", "application/json")}
    )
    assert garbled.status_code == 400
    assert "offline_malformed" in garbled.text
    forged = await web.post("/portal/offline", files={"request": ("request.json", request, "application/json")})
    assert forged.status_code == 403
    assert "csrf_token_invalid" in forged.text
