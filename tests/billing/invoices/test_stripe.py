"""The Stripe provider, without network to Stripe, on SQLite and PostgreSQL.

Webhooks: events are signed here exactly as Stripe signs them (``stripe.WebhookSignature``'s scheme: an HMAC-SHA256
of ``{timestamp}.{payload}`` under the endpoint's secret, in a ``Stripe-Signature`` header) and verified by the
server with ``stripe.Webhook.construct_event``. A bad signature, a replayed event and an out-of-order pair each
leave the state correct.

Links: the Checkout and customer-portal calls go to a local HTTP server standing in for Stripe's API (the
provider's API base, ``LICENSE_SERVER_STRIPE_API_BASE``, points at it); it records what the official library sent
and answers as Stripe's API would.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import stripe
from pydantic import SecretStr
from sqlalchemy import func, select

from license_server.auth.tokens import Actor
from license_server.billing.accounts.models import BillingAccount, Subscription
from license_server.billing.payments.models import Payment, StripeEvent
from license_server.config import Settings
from license_server.events.models import Event
from license_server.runtime import Runtime
from tests.billing.conftest import Platform, PlatformFactory, subscribe, tiny_plan
from tests.conftest import MovableClock

pytestmark = pytest.mark.usefixtures("backend")

WEBHOOK_SECRET = "whsec_test_secret_for_signing"
ANCHOR = datetime(2026, 3, 10, 9, tzinfo=UTC)
WEBHOOK = "/v1/billing/stripe/webhook"


class _FakeStripe(BaseHTTPRequestHandler):
    requests: list[tuple[str, dict[str, list[str]], str]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        self.requests.append((self.path, parse_qs(body), self.headers.get("Authorization") or ""))
        count = len(self.requests)
        answers = {
            "/v1/customers": {"id": f"cus_test{count}", "object": "customer"},
            "/v1/checkout/sessions": {
                "id": f"cs_test_{count}",
                "object": "checkout.session",
                "url": f"https://checkout.stripe.test/c/pay/cs_test_{count}",
            },
            "/v1/billing_portal/sessions": {
                "id": f"bps_{count}",
                "object": "billing_portal.session",
                "url": f"https://billing.stripe.test/p/session/bps_{count}",
            },
        }
        answer = answers.get(self.path)
        payload = json.dumps(answer or {"error": {"message": "no such route", "type": "invalid_request_error"}})
        self.send_response(200 if answer else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Request-Id", f"req_{count}")
        self.end_headers()
        self.wfile.write(payload.encode())

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def fake_stripe() -> Iterator[str]:
    _FakeStripe.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeStripe)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def settings(settings: Settings, fake_stripe: str) -> Settings:
    return settings.model_copy(
        update={
            "stripe_secret_key": SecretStr("sk_test_local"),
            "stripe_webhook_secret": SecretStr(WEBHOOK_SECRET),
            "stripe_api_base": fake_stripe,
        }
    )


async def _open_invoice(
    client: httpx.AsyncClient,
    make_platform: PlatformFactory,
    runtime: Runtime,
    actor: Actor,
    clock: MovableClock,
    owner_headers: dict[str, str],
) -> tuple[Platform, str]:
    clock.now = ANCHOR
    platform = await make_platform(catalogues=(tiny_plan("pro", {}, price="49.99"),))
    await subscribe(runtime, actor, platform, "ws-1", "pro", anchor=ANCHOR)
    issued = await client.post(
        f"/v1/admin/billing/platforms/{platform.id}/accounts/ws-1/invoices/issue", headers=owner_headers
    )
    return platform, issued.json()["invoices"][0]["number"]


def _signed(event: dict[str, Any], secret: str = WEBHOOK_SECRET) -> tuple[str, dict[str, str]]:
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(payload, secret)
    return payload, {"Stripe-Signature": header, "Content-Type": "application/json"}


def _event(event_id: str, type_: str, created: int, obj: dict[str, Any]) -> dict[str, Any]:
    return {"id": event_id, "object": "event", "type": type_, "created": created, "data": {"object": obj}}


async def _post(client: httpx.AsyncClient, event: dict[str, Any], secret: str = WEBHOOK_SECRET) -> httpx.Response:
    payload, headers = _signed(event, secret)
    return await client.post(WEBHOOK, content=payload, headers=headers)


async def _state(runtime: Runtime) -> dict[str, Any]:
    async with runtime.session_factory() as session:
        status = await session.scalar(
            select(Subscription.status)
            .join(BillingAccount, BillingAccount.id == Subscription.account_id)
            .where(BillingAccount.external_id == "ws-1")
        )
        return {
            "subscription": status,
            "payments": int(await session.scalar(select(func.count()).select_from(Payment)) or 0),
            "stripe_events": int(await session.scalar(select(func.count()).select_from(StripeEvent)) or 0),
            "failed_events": int(
                await session.scalar(select(func.count()).select_from(Event).where(Event.type == "payment.failed")) or 0
            ),
        }


async def _subscription_id(runtime: Runtime) -> str:
    async with runtime.session_factory() as session:
        return str(await session.scalar(select(Subscription.id)))


async def _invoice_status(client: httpx.AsyncClient, headers: dict[str, str], number: str) -> str:
    return str((await client.get(f"/v1/admin/billing/invoices/{number}", headers=headers)).json()["status"])


def _checkout_completed(event_id: str, number: str, created: int = 1_780_000_000) -> dict[str, Any]:
    return _event(
        event_id,
        "checkout.session.completed",
        created,
        {
            "id": "cs_test_1",
            "object": "checkout.session",
            "payment_status": "paid",
            "amount_total": 4999,
            "currency": "usd",
            "payment_intent": "pi_1",
            "metadata": {"license_server_invoice": number},
        },
    )


async def test_payment_and_portal_links_through_the_official_library(
    client: httpx.AsyncClient,
    make_platform: PlatformFactory,
    runtime: Runtime,
    actor: Actor,
    clock: MovableClock,
    owner_headers: dict[str, str],
) -> None:
    platform, number = await _open_invoice(client, make_platform, runtime, actor, clock, owner_headers)
    link = await client.post(platform.url("ws-1", f"invoices/{number}/payment-link"), headers=platform.headers)
    assert link.status_code == 200, link.text
    assert link.json()["data"] == {
        "url": "https://checkout.stripe.test/c/pay/cs_test_2",
        "provider": "stripe",
        "provider_id": "cs_test_2",
    }
    (customer_path, customer_form, auth), (checkout_path, form, _) = _FakeStripe.requests
    assert (customer_path, checkout_path) == ("/v1/customers", "/v1/checkout/sessions")
    assert auth == "Bearer sk_test_local"
    assert customer_form["metadata[external_id]"] == ["ws-1"]
    assert form["customer"] == ["cus_test1"]
    assert form["mode"] == ["payment"]
    assert form["line_items[0][price_data][unit_amount]"] == ["4999"]  # cents, an integer
    assert form["line_items[0][price_data][currency]"] == ["usd"]
    assert form["metadata[license_server_invoice]"] == [number]

    again = await client.post(f"/v1/admin/billing/invoices/{number}/payment-link", headers=owner_headers)
    assert again.status_code == 200
    assert [path for path, _, _ in _FakeStripe.requests].count("/v1/customers") == 1  # the customer is remembered

    portal = await client.post(platform.url("ws-1", "billing-portal"), headers=platform.headers)
    assert portal.status_code == 200, portal.text
    assert portal.json()["data"]["url"].startswith("https://billing.stripe.test/p/session/")
    assert _FakeStripe.requests[-1][1]["customer"] == ["cus_test1"]


async def test_a_bad_signature_is_refused_and_changes_nothing(
    client: httpx.AsyncClient,
    make_platform: PlatformFactory,
    runtime: Runtime,
    actor: Actor,
    clock: MovableClock,
    owner_headers: dict[str, str],
) -> None:
    _, number = await _open_invoice(client, make_platform, runtime, actor, clock, owner_headers)
    before = await _state(runtime)
    forged = await _post(client, _checkout_completed("evt_forged", number), secret="whsec_someone_else")
    assert (forged.status_code, forged.json()["code"]) == (400, "webhook_signature_invalid")
    payload, headers = _signed(_checkout_completed("evt_tampered", number))
    tampered = await client.post(WEBHOOK, content=payload.replace("4999", "1"), headers=headers)
    assert tampered.status_code == 400
    unsigned = await client.post(WEBHOOK, content=payload, headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 400
    assert await _state(runtime) == before
    assert await _invoice_status(client, owner_headers, number) == "open"


async def test_checkout_completed_pays_the_invoice_once_however_often_it_is_delivered(
    client: httpx.AsyncClient,
    make_platform: PlatformFactory,
    runtime: Runtime,
    actor: Actor,
    clock: MovableClock,
    owner_headers: dict[str, str],
) -> None:
    _, number = await _open_invoice(client, make_platform, runtime, actor, clock, owner_headers)
    event = _checkout_completed("evt_1", number)
    first = await _post(client, event)
    assert (first.status_code, first.json()["outcome"]) == (200, "applied"), first.text
    assert await _invoice_status(client, owner_headers, number) == "paid"
    replay = await _post(client, event)
    assert (replay.status_code, replay.json()["outcome"]) == (200, "replayed")
    # A different event about the same Checkout Session (Stripe retries with new ids too) pays nothing twice.
    duplicate = await _post(client, _checkout_completed("evt_2", number, created=1_780_000_100))
    assert duplicate.status_code == 200
    state = await _state(runtime)
    assert state["payments"] == 1
    assert state["subscription"] == "active"
    payments = (await client.get(f"/v1/admin/billing/invoices/{number}/payments", headers=owner_headers)).json()
    assert [(p["provider"], p["amount"], p["reference"]) for p in payments] == [("stripe", "49.99", "pi_1")]


async def test_an_older_subscription_event_arriving_late_does_not_undo_a_newer_one(
    client: httpx.AsyncClient,
    make_platform: PlatformFactory,
    runtime: Runtime,
    actor: Actor,
    clock: MovableClock,
    owner_headers: dict[str, str],
) -> None:
    await _open_invoice(client, make_platform, runtime, actor, clock, owner_headers)
    subscription = await _subscription_id(runtime)

    def update(event_id: str, created: int, status: str) -> dict[str, Any]:
        return _event(
            event_id,
            "customer.subscription.updated",
            created,
            {
                "id": "sub_1",
                "object": "subscription",
                "status": status,
                "metadata": {"license_server_subscription": subscription},
            },
        )

    newer = await _post(client, update("evt_newer", 1_780_000_200, "past_due"))
    assert newer.json()["outcome"] == "applied"
    older = await _post(client, update("evt_older", 1_780_000_100, "active"))
    assert older.json()["outcome"] == "stale"
    assert (await _state(runtime))["subscription"] == "past_due"
    latest = await _post(client, update("evt_latest", 1_780_000_300, "active"))
    assert latest.json()["outcome"] == "applied"
    assert (await _state(runtime))["subscription"] == "active"


async def test_a_failure_reported_after_the_payment_it_preceded_changes_nothing(
    client: httpx.AsyncClient,
    make_platform: PlatformFactory,
    runtime: Runtime,
    actor: Actor,
    clock: MovableClock,
    owner_headers: dict[str, str],
) -> None:
    _, number = await _open_invoice(client, make_platform, runtime, actor, clock, owner_headers)

    def stripe_invoice(event_id: str, type_: str, created: int) -> dict[str, Any]:
        return _event(
            event_id,
            type_,
            created,
            {
                "id": "in_1",
                "object": "invoice",
                "status": "paid" if type_ == "invoice.paid" else "open",
                "amount_paid": 4999 if type_ == "invoice.paid" else 0,
                "currency": "usd",
                "metadata": {"license_server_invoice": number},
            },
        )

    paid = await _post(client, stripe_invoice("evt_paid", "invoice.paid", 1_780_000_200))
    assert paid.json()["outcome"] == "applied", paid.text
    failed = await _post(client, stripe_invoice("evt_failed", "invoice.payment_failed", 1_780_000_100))
    assert failed.json()["outcome"] == "stale"
    state = await _state(runtime)
    assert (state["subscription"], state["failed_events"], state["payments"]) == ("active", 0, 1)
    assert await _invoice_status(client, owner_headers, number) == "paid"


async def test_a_failed_payment_makes_the_subscription_past_due_until_paid(
    client: httpx.AsyncClient,
    make_platform: PlatformFactory,
    runtime: Runtime,
    actor: Actor,
    clock: MovableClock,
    owner_headers: dict[str, str],
) -> None:
    _, number = await _open_invoice(client, make_platform, runtime, actor, clock, owner_headers)
    failed = await _post(
        client,
        _event(
            "evt_f",
            "invoice.payment_failed",
            1_780_000_100,
            {"id": "in_2", "object": "invoice", "metadata": {"license_server_invoice": number}},
        ),
    )
    assert failed.json()["outcome"] == "applied", failed.text
    state = await _state(runtime)
    assert (state["subscription"], state["failed_events"]) == ("past_due", 1)
    await _post(client, _checkout_completed("evt_paid", number, created=1_780_000_200))
    assert (await _state(runtime))["subscription"] == "active"
    unknown = await _post(client, _checkout_completed("evt_unknown", "INV-999999", created=1_780_000_300))
    assert (unknown.status_code, unknown.json()["outcome"]) == (200, "rejected")  # recorded: Stripe stops retrying
