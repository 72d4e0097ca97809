"""Snapshots: everything the effective limits of one account depend on, loaded in one go (see service.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from license_server.billing.accounts.models import Subscription
from license_server.billing.limits import LimitFacts
from license_server.billing.plans.terms import BillingTerms


@dataclass(frozen=True)
class PlatformSnapshot:
    id: uuid.UUID
    name: str
    billing_enabled: bool
    default_plan_id: uuid.UUID | None
    restrictive_defaults: dict[str, int]


@dataclass(frozen=True)
class SubscriptionView:
    subscription: Subscription
    plan_code: str
    terms: BillingTerms


@dataclass(frozen=True)
class AccountSnapshot:
    account_id: uuid.UUID
    platform: PlatformSnapshot
    external_id: str
    flex_enabled: bool
    facts: LimitFacts
    subscriptions: tuple[SubscriptionView, ...]
    # The subscription that anchors periods and names the plan: the earliest-started active one.
    primary: SubscriptionView | None
    default_plan_terms: BillingTerms | None

    @property
    def anchor(self) -> datetime | None:
        return self.primary.subscription.anchor_at if self.primary else None

    @property
    def billing_status(self) -> str:
        """Seed 004: disabled (billing off), unset (never subscribed), active, inactive."""
        if not self.platform.billing_enabled:
            return "disabled"
        if not self.subscriptions:
            return "unset"
        return "active" if self.primary else "inactive"

    @property
    def rate_card_terms(self) -> BillingTerms | None:
        return self.primary.terms if self.primary else self.default_plan_terms
