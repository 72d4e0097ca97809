"""Stripe, through the official ``stripe`` library: Checkout (payment) links, customer portal links, and the
signature check of its webhooks (``stripe.Webhook.construct_event``).

Calls go through a ``StripeClient`` with the library's httpx client (async, no thread per call). Its API base is
the library's own unless ``stripe_api_base`` says otherwise (tests point it at a local stand-in for Stripe's API).
"""

from __future__ import annotations

from typing import Any

import stripe

from license_server.billing.payments.providers import Link, PaymentRequest
from license_server.billing.payments.service import (
    ACCOUNT_METADATA,
    INVOICE_METADATA,
    SUBSCRIPTION_METADATA,
    to_minor_units,
)
from license_server.config import Settings
from license_server.errors import PaymentProviderNotConfigured, PaymentProviderUnavailable, WebhookSignatureInvalid


class StripeProvider:
    name = "stripe"

    def __init__(self, settings: Settings) -> None:
        if settings.stripe_secret_key is None:
            raise PaymentProviderNotConfigured("Stripe is not configured (LICENSE_SERVER_STRIPE_SECRET_KEY)")
        self._settings = settings
        base = {"api": settings.stripe_api_base} if settings.stripe_api_base else None
        self._client = stripe.StripeClient(
            settings.stripe_secret_key.get_secret_value(),
            base_addresses=base,  # type: ignore[arg-type]
            http_client=stripe.HTTPXClient(),
            max_network_retries=1,
        )

    async def payment_link(self, request: PaymentRequest) -> tuple[Link, str | None]:
        metadata = {
            INVOICE_METADATA: request.invoice_number,
            ACCOUNT_METADATA: request.account_id,
            SUBSCRIPTION_METADATA: request.subscription_id,
        }
        try:
            customer_id = request.customer_id
            if customer_id is None:
                customer = await self._client.v1.customers.create_async(
                    params={"metadata": {ACCOUNT_METADATA: request.account_id, "external_id": request.external_id}}
                )
                customer_id = str(customer.id)
            session = await self._client.v1.checkout.sessions.create_async(
                params={
                    "mode": "payment",
                    "customer": customer_id,
                    "line_items": [
                        {
                            "quantity": 1,
                            "price_data": {
                                "currency": request.currency.lower(),
                                "unit_amount": to_minor_units(request.amount_due, request.currency),
                                "product_data": {"name": f"Invoice {request.invoice_number}"},
                            },
                        }
                    ],
                    "metadata": metadata,
                    "payment_intent_data": {"metadata": metadata},
                    "success_url": self._settings.stripe_checkout_success_url,
                    "cancel_url": self._settings.stripe_checkout_cancel_url,
                }
            )
        except stripe.StripeError as exc:
            raise PaymentProviderUnavailable(f"Stripe refused or could not be reached ({type(exc).__name__})") from None
        return Link(str(session.url), str(session.id)), customer_id

    async def portal_link(self, customer_id: str) -> Link:
        try:
            session = await self._client.v1.billing_portal.sessions.create_async(
                params={"customer": customer_id, "return_url": self._settings.stripe_portal_return_url}
            )
        except stripe.StripeError as exc:
            raise PaymentProviderUnavailable(f"Stripe refused or could not be reached ({type(exc).__name__})") from None
        return Link(str(session.url), str(session.id))


def verified_event(settings: Settings, payload: bytes, signature: str | None) -> dict[str, Any]:
    """The event, if ``Stripe-Signature`` verifies against the webhook secret (and is recent); else a 400."""
    if settings.stripe_webhook_secret is None:
        raise PaymentProviderNotConfigured("Stripe webhooks are not configured (LICENSE_SERVER_STRIPE_WEBHOOK_SECRET)")
    try:
        event = stripe.Webhook.construct_event(payload, signature, settings.stripe_webhook_secret.get_secret_value())
    except stripe.SignatureVerificationError:
        raise WebhookSignatureInvalid("the Stripe-Signature header does not verify", field="Stripe-Signature") from None
    except ValueError:
        raise WebhookSignatureInvalid("the body is not a Stripe event", field="body") from None
    body: dict[str, Any] = event.to_dict()
    return body
