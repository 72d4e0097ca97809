"""A subscription's status, decided from its facts and ``now``: one pure function, one rung per line, first match wins.

The stored ``status`` column is this function's last answer, written by ``subscriptions.service`` alone (the one
writer), which compares it with the previous answer to emit each transition's event once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from license_server.billing.accounts.models import SubscriptionStatus

DAY = timedelta(days=1)


@dataclass(frozen=True)
class SubscriptionFacts:
    trial_ends_at: datetime | None
    cancel_at: datetime | None  # when a cancellation takes effect: the period end, or the moment asked ("at once")
    paused_at: datetime | None  # staff paused it; resuming clears it
    payment_failed_at: datetime | None  # the latest payment failed and nothing has been paid since
    payment_overdue_at: datetime | None  # an unpaid amount (an issued invoice) is overdue from then (due + grace)


@dataclass(frozen=True)
class StatusDecision:
    status: SubscriptionStatus
    reason: str  # a stable machine code: why this rung matched
    trial_days_remaining: int | None  # None: no trial; 0: the trial is over


def trial_days_remaining(trial_ends_at: datetime | None, now: datetime) -> int | None:
    """Whole days left, a day begun counting as a day (the banner says "1 day left" until the last second)."""
    if trial_ends_at is None:
        return None
    left = trial_ends_at - now
    return max(0, math.ceil(left / DAY)) if left > timedelta(0) else 0


def compute_subscription_status(facts: SubscriptionFacts, now: datetime) -> StatusDecision:
    days = trial_days_remaining(facts.trial_ends_at, now)
    if facts.cancel_at is not None and now >= facts.cancel_at:
        return StatusDecision(SubscriptionStatus.CANCELED, "canceled", days)
    if facts.paused_at is not None:
        return StatusDecision(SubscriptionStatus.PAUSED, "paused", days)
    if facts.payment_failed_at is not None:
        return StatusDecision(SubscriptionStatus.PAST_DUE, "payment_failed", days)
    if facts.payment_overdue_at is not None and now >= facts.payment_overdue_at:
        return StatusDecision(SubscriptionStatus.PAST_DUE, "payment_overdue", days)
    if facts.trial_ends_at is not None and now < facts.trial_ends_at:
        return StatusDecision(SubscriptionStatus.TRIALING, "in_trial", days)
    # A trial ends to active whatever the plan's price: the first period's fee is invoiced then, and an unpaid
    # invoice turns it past_due after the grace (payment_overdue_at), so no payment method needs to be on file.
    return StatusDecision(SubscriptionStatus.ACTIVE, "trial_ended" if facts.trial_ends_at else "in_good_standing", days)


def transition_events(previous: SubscriptionStatus | None, current: SubscriptionStatus) -> tuple[str, ...]:
    """The ``subscription.*`` events a status change emits (names without the prefix), in order. None: created."""
    if previous == current:
        return ()
    events: list[str] = []
    if previous == SubscriptionStatus.TRIALING and current != SubscriptionStatus.CANCELED:
        events.append("trial_ended")
    if previous == SubscriptionStatus.CANCELED:
        events.append("reactivated")
    elif previous in (SubscriptionStatus.PAST_DUE, SubscriptionStatus.PAUSED) and current in (
        SubscriptionStatus.ACTIVE,
        SubscriptionStatus.TRIALING,
    ):
        events.append("resumed")
    if current == SubscriptionStatus.PAST_DUE and previous is not None:
        events.append("past_due")
    elif current == SubscriptionStatus.PAUSED:
        events.append("paused")
    elif current == SubscriptionStatus.CANCELED:
        events.append("canceled")
    return tuple(events)
