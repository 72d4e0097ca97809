"""The payment provider interface, and the built-in manual provider.

A provider turns an open invoice into a way to pay it (a link) and an account into a place to manage its payment
methods (a portal); what it learns back (a payment, a refund, a failure) goes through ``payments.service``, whose
writes are the same for every provider. The manual provider has no links: staff record what arrived by bank
transfer or cheque (admin API, ``license-server billing payments record|refund``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from license_server.errors import PaymentProviderNotConfigured


@dataclass(frozen=True)
class Link:
    url: str
    provider_id: str  # the provider's id of what the link opens (a Checkout Session, a portal session)


@dataclass(frozen=True)
class PaymentRequest:
    invoice_number: str
    account_id: str
    external_id: str
    subscription_id: str
    amount_due: Decimal
    currency: str
    customer_id: str | None  # the account's customer at the provider, when known


class PaymentProvider(Protocol):
    name: str

    async def payment_link(self, request: PaymentRequest) -> tuple[Link, str | None]:
        """A link that pays ``amount_due`` of the invoice, and the provider's customer id it used (to remember)."""
        ...

    async def portal_link(self, customer_id: str) -> Link: ...


class ManualProvider:
    """Staff record payments by hand; there is nothing to link to."""

    name = "manual"

    async def payment_link(self, request: PaymentRequest) -> tuple[Link, str | None]:
        raise PaymentProviderNotConfigured("the manual provider has no payment links; configure Stripe")

    async def portal_link(self, customer_id: str) -> Link:
        raise PaymentProviderNotConfigured("the manual provider has no customer portal; configure Stripe")
