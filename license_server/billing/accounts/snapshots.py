"""Snapshots: everything the effective limits of one account depend on, loaded in one go (see service.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from license_server.billing.accounts.models import BLOCKING_STATUSES, Subscription, SubscriptionStatus
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
    # The subscription that anchors periods and names the plan: the earliest-started standing one (not canceled).
    primary: SubscriptionView | None
    default_plan_terms: BillingTerms | None
    # The frozen time of the test clock the account follows; None: real time (see billing/clocks/service.py).
    test_now: datetime | None = None

    @cached_property  # asked by every consume and reserve; a snapshot never changes (a new one replaces it)
    def blocked_by(self) -> SubscriptionStatus | None:
        """past_due or paused when no standing subscription is in good standing: consume and reserve are refused
        then (runs paused, nothing deleted); past_due first, since paying ends it."""
        standing = [view.subscription.status for view in self.subscriptions if view.subscription.is_standing()]
        if not standing or any(status not in BLOCKING_STATUSES for status in standing):
            return None
        return next(status for status in BLOCKING_STATUSES if status in standing)

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
