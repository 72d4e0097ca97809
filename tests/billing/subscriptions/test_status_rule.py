"""The subscription status rule, rung by rung; the transition events; the trial countdown; the proration rule."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from license_server.billing.accounts.models import SubscriptionStatus as S
from license_server.billing.periods import Period
from license_server.billing.subscriptions.proration import prorate_upgrade
from license_server.billing.subscriptions.status import (
    SubscriptionFacts,
    compute_subscription_status,
    transition_events,
    trial_days_remaining,
)

NOW = datetime(2027, 3, 10, 12, 0, tzinfo=UTC)
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
PLAIN = SubscriptionFacts(
    trial_ends_at=None, cancel_at=None, paused_at=None, payment_failed_at=None, payment_overdue_at=None
)


def status(**facts: object) -> tuple[S, str]:
    decision = compute_subscription_status(replace(PLAIN, **facts), NOW)  # type: ignore[arg-type]
    return decision.status, decision.reason


def test_no_facts_is_active_in_good_standing() -> None:
    assert status() == (S.ACTIVE, "in_good_standing")


def test_a_trial_before_its_end_is_trialing_and_at_its_end_becomes_active() -> None:
    assert status(trial_ends_at=NOW + HOUR) == (S.TRIALING, "in_trial")
    assert status(trial_ends_at=NOW) == (S.ACTIVE, "trial_ended")
    assert status(trial_ends_at=NOW - DAY) == (S.ACTIVE, "trial_ended")


def test_an_overdue_payment_is_past_due_only_once_its_grace_has_passed() -> None:
    assert status(payment_overdue_at=NOW + HOUR) == (S.ACTIVE, "in_good_standing")
    assert status(payment_overdue_at=NOW) == (S.PAST_DUE, "payment_overdue")


def test_a_failed_payment_is_past_due_even_in_a_trial_and_before_any_due_date() -> None:
    assert status(payment_failed_at=NOW - HOUR) == (S.PAST_DUE, "payment_failed")
    assert status(payment_failed_at=NOW - HOUR, trial_ends_at=NOW + DAY) == (S.PAST_DUE, "payment_failed")
    assert status(payment_failed_at=NOW - HOUR, payment_overdue_at=NOW - HOUR) == (S.PAST_DUE, "payment_failed")


def test_paused_wins_over_past_due_and_trial() -> None:
    assert status(paused_at=NOW - DAY, payment_failed_at=NOW - HOUR, trial_ends_at=NOW + DAY) == (S.PAUSED, "paused")


def test_canceled_wins_over_everything_once_its_time_has_come() -> None:
    everything = {"paused_at": NOW - DAY, "payment_failed_at": NOW - HOUR, "trial_ends_at": NOW + DAY}
    assert status(cancel_at=NOW, **everything) == (S.CANCELED, "canceled")
    # a cancellation at the period end does not end the subscription before then
    assert status(cancel_at=NOW + DAY) == (S.ACTIVE, "in_good_standing")


@pytest.mark.parametrize(
    ("left", "days"),
    [(None, None), (timedelta(0), 0), (-DAY, 0), (timedelta(seconds=1), 1), (DAY, 1), (DAY + HOUR, 2), (14 * DAY, 14)],
)
def test_trial_days_remaining_counts_a_begun_day_as_a_day(left: timedelta | None, days: int | None) -> None:
    assert trial_days_remaining(None if left is None else NOW + left, NOW) == days
    if left is not None:
        decision = compute_subscription_status(replace(PLAIN, trial_ends_at=NOW + left), NOW)
        assert decision.trial_days_remaining == days


@pytest.mark.parametrize(
    ("previous", "current", "events"),
    [
        (S.ACTIVE, S.ACTIVE, ()),
        (S.TRIALING, S.ACTIVE, ("trial_ended",)),
        (S.TRIALING, S.PAST_DUE, ("trial_ended", "past_due")),
        (S.ACTIVE, S.PAST_DUE, ("past_due",)),
        (S.PAST_DUE, S.ACTIVE, ("resumed",)),
        (S.ACTIVE, S.PAUSED, ("paused",)),
        (S.PAUSED, S.ACTIVE, ("resumed",)),
        (S.PAUSED, S.PAST_DUE, ("past_due",)),
        (S.ACTIVE, S.CANCELED, ("canceled",)),
        (S.TRIALING, S.CANCELED, ("canceled",)),
        (S.CANCELED, S.ACTIVE, ("reactivated",)),
        (None, S.TRIALING, ()),
    ],
)
def test_each_transition_names_its_events(previous: S | None, current: S, events: tuple[str, ...]) -> None:
    assert transition_events(previous, current) == events


def test_upgrade_proration_credits_the_unused_days_of_the_old_fee_and_charges_the_new_one_exactly() -> None:
    """A 30-day period with 10 whole days left: 99 * 10/30 = 33.00 credited, 399 * 10/30 = 133.00 charged."""
    period = Period(datetime(2027, 4, 1, tzinfo=UTC), datetime(2027, 5, 1, tzinfo=UTC))
    proration = prorate_upgrade(
        old_price=Decimal(99), new_price=Decimal(399), period=period, now=datetime(2027, 4, 20, 18, tzinfo=UTC)
    )
    assert (proration.days_left, proration.period_days) == (10, 30)
    assert (proration.credit, proration.charge, proration.net) == (
        Decimal("33.00"),
        Decimal("133.00"),
        Decimal("100.00"),
    )


def test_upgrade_proration_rounds_each_line_half_up_to_cents_once() -> None:
    """31 days, 10 left: 99 * 10/31 = 31.935.. -> 31.94; 399 * 10/31 = 128.709.. -> 128.71; net 96.77."""
    period = Period(datetime(2027, 1, 1, tzinfo=UTC), datetime(2027, 2, 1, tzinfo=UTC))
    proration = prorate_upgrade(
        old_price=Decimal(99), new_price=Decimal(399), period=period, now=datetime(2027, 1, 22, tzinfo=UTC)
    )
    assert (proration.days_left, proration.period_days) == (10, 31)
    assert (proration.credit, proration.charge, proration.net) == (
        Decimal("31.94"),
        Decimal("128.71"),
        Decimal("96.77"),
    )
    # half-up, not half-even: 0.125 rounds to 0.13
    half = prorate_upgrade(
        old_price=Decimal(0), new_price=Decimal("0.25"), period=Period(NOW, NOW + 2 * DAY), now=NOW + DAY
    )
    assert half.charge == Decimal("0.13")


def test_upgrade_at_the_periods_first_instant_swaps_the_whole_fee_and_at_its_last_day_nothing() -> None:
    period = Period(datetime(2027, 4, 1, tzinfo=UTC), datetime(2027, 5, 1, tzinfo=UTC))
    first = prorate_upgrade(old_price=Decimal(99), new_price=Decimal(399), period=period, now=period.start)
    assert (first.credit, first.charge) == (Decimal("99.00"), Decimal("399.00"))
    last = prorate_upgrade(old_price=Decimal(99), new_price=Decimal(399), period=period, now=period.end - HOUR)
    assert (last.days_left, last.net) == (0, Decimal("0.00"))
