"""Dify's link routes with the server's own answers (contract §3.9-3.10): the payment link is Stripe's checkout for
an open invoice of the plan asked for, when Stripe is configured; the invoices link opens the workspace's own
Invoices page in the customer portal. Where the server has no answer, the configured templates still apply
(tests/inner_billing/test_contract.py). Stripe's API is the local stand-in of the Stripe tests."""

from __future__ import annotations

import re

import httpx
import pytest
from litestar import Litestar
from pydantic import SecretStr

from license_server.auth.tokens import Actor
from license_server.billing.invoices import service as invoice_service
from license_server.config import DifyBillingSettings, Settings
from license_server.inner_billing.controllers import STATE_KEY
from license_server.inner_billing.service import InnerBilling
from license_server.runtime import Runtime
from tests.billing.invoices.test_stripe import _FakeStripe, fake_stripe
from tests.inner_billing.conftest import DifyBilling, new_tenant, subscribe

__all__ = ["fake_stripe"]  # the fixture, shared

pytestmark = pytest.mark.usefixtures("backend")

CHECKOUT = re.compile(r"^https://checkout\.stripe\.test/c/pay/cs_test_\d+$")
TEMPLATE = "https://pay.example/checkout?plan={plan}&t={tenant_id}"
DIFY_BILLING = DifyBillingSettings(payment_link_url=TEMPLATE, invoices_url="https://pay.example/invoices/{tenant_id}")


@pytest.fixture
def settings(settings: Settings, fake_stripe: str) -> Settings:
    return settings.model_copy(
        update={
            "stripe_secret_key": SecretStr("sk_test_local"),
            "stripe_api_base": fake_stripe,
            "dify_billing": DIFY_BILLING,
        }
    )


async def _issued(runtime: Runtime) -> int:
    async with runtime.session_factory() as session:
        return await invoice_service.issue_due_invoices(session, now=runtime.clock())


async def test_the_payment_link_is_stripes_checkout_for_the_workspaces_open_invoice_of_that_plan(
    dify: DifyBilling, runtime: Runtime, actor: Actor
) -> None:
    tenant = new_tenant()
    await subscribe(runtime, actor, dify.platform, tenant, "dify-professional")
    assert await _issued(runtime) == 1
    pay = await dify.get(
        "/subscription/payment-link", plan="professional", interval="month", prefilled_email="", tenant_id=tenant
    )
    assert CHECKOUT.match(pay["url"]), pay
    checkout = [form for path, form, _ in _FakeStripe.requests if path == "/v1/checkout/sessions"]
    assert len(checkout) == 1
    assert checkout[0]["line_items[0][price_data][unit_amount]"] == ["5900"]  # the invoice's 59.00, in cents

    # Another plan than the open invoice's, or a workspace that owes nothing: the operator's checkout, as configured.
    team = await dify.get(
        "/subscription/payment-link", plan="team", interval="year", prefilled_email="", tenant_id=tenant
    )
    assert team == {"url": f"https://pay.example/checkout?plan=team&t={tenant}"}
    fresh = new_tenant()
    owes_nothing = await dify.get(
        "/subscription/payment-link", plan="professional", interval="month", prefilled_email="", tenant_id=fresh
    )
    assert owes_nothing == {"url": f"https://pay.example/checkout?plan=professional&t={fresh}"}
    assert len([path for path, _, _ in _FakeStripe.requests if path == "/v1/checkout/sessions"]) == 1


async def test_without_stripe_the_payment_link_is_the_template_even_with_an_open_invoice(
    dify: DifyBilling, runtime: Runtime, actor: Actor, app: Litestar
) -> None:
    app.state[STATE_KEY] = InnerBilling(runtime.billing, DIFY_BILLING)  # no payment provider
    tenant = new_tenant()
    await subscribe(runtime, actor, dify.platform, tenant, "dify-professional")
    assert await _issued(runtime) == 1
    pay = await dify.get(
        "/subscription/payment-link", plan="professional", interval="month", prefilled_email="", tenant_id=tenant
    )
    assert pay == {"url": f"https://pay.example/checkout?plan=professional&t={tenant}"}
    assert _FakeStripe.requests == []


async def test_the_invoices_link_opens_the_workspaces_portal_invoices_page_once(
    dify: DifyBilling, runtime: Runtime, actor: Actor, app: Litestar
) -> None:
    tenant, other = new_tenant(), new_tenant()
    for workspace in (tenant, other):
        await subscribe(runtime, actor, dify.platform, workspace, "dify-professional")
    assert await _issued(runtime) == 2
    answer = await dify.get("/invoices", prefilled_email="a@x.io", tenant_id=tenant)
    assert set(answer) == {"url"}  # Dify's UI reads url, raw
    url = httpx.URL(answer["url"])
    assert url.path.startswith("/portal/start/lspl_")

    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as browser:
        token = url.path.rsplit("/", 1)[1]
        assert (await browser.get(url.path)).status_code == 200
        assert (await browser.post("/portal/start", data={"token": token})).status_code == 303
        html = (await browser.get("/portal/invoices")).text
        assert len(re.findall(r'href="/portal/invoices/[0-9a-f-]{36}/pdf"', html)) == 1  # its own invoice only
        assert "59.00 USD" in html
        # billing:read: the workspace's invoices, not its plan changes
        refused = await browser.post("/portal/plans/change", data={"plan": "dify-team"})
        assert refused.status_code == 403
        assert "permission_denied" in refused.text
        again = await browser.post("/portal/start", data={"token": token})
        assert "portal_link_used" in again.text
