"""The effective-limit function, rung by rung in seed 004's order, and the period function across month ends."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from license_server.billing.limits import (
    SEED_RESTRICTIVE_DEFAULTS,
    EffectiveLimit,
    LimitFacts,
    LimitSource,
    Quota,
    QuotaKind,
    effective_limit,
)
from license_server.billing.periods import Period, add_months, period_containing

APPS = "app.max_total_count"
MESSAGES = "conversation_message.max_monthly_count"
SMALL = {APPS: Quota(QuotaKind.TOTAL, 3), MESSAGES: Quota(QuotaKind.MONTHLY, 100)}
BIG = {APPS: Quota(QuotaKind.TOTAL, 50), MESSAGES: Quota(QuotaKind.MONTHLY, 5000)}


def test_rung_1_an_override_wins_over_everything() -> None:
    facts = LimitFacts(billing_enabled=False, overrides={APPS: 7}, active_plans=(BIG,))
    assert effective_limit(facts, APPS) == EffectiveLimit(7, LimitSource.OVERRIDE)


def test_rung_1_an_override_can_make_a_key_unlimited_or_unavailable() -> None:
    facts = LimitFacts(overrides={APPS: None, MESSAGES: 0}, active_plans=(SMALL,))
    assert effective_limit(facts, APPS) == EffectiveLimit(None, LimitSource.OVERRIDE)
    assert effective_limit(facts, MESSAGES) == EffectiveLimit(0, LimitSource.OVERRIDE)


def test_rung_2_billing_disabled_is_unlimited_even_without_a_subscription() -> None:
    facts = LimitFacts(billing_enabled=False, active_plans=())
    assert effective_limit(facts, APPS) == EffectiveLimit(None, LimitSource.BILLING_DISABLED)


def test_rung_3_the_highest_among_active_subscriptions() -> None:
    facts = LimitFacts(active_plans=(SMALL, BIG))
    assert effective_limit(facts, APPS) == EffectiveLimit(50, LimitSource.SUBSCRIPTION)
    assert effective_limit(LimitFacts(active_plans=(BIG, SMALL)), MESSAGES).limit == 5000


def test_rung_3_a_key_a_plan_does_not_define_is_unlimited() -> None:
    assert effective_limit(LimitFacts(active_plans=(SMALL,)), "databases") == EffectiveLimit(
        None, LimitSource.SUBSCRIPTION
    )
    # one plan without the key makes it unlimited, whatever the other says
    assert effective_limit(LimitFacts(active_plans=(SMALL, {})), APPS).limit is None


def test_rung_3_null_is_unlimited_and_zero_is_not_available() -> None:
    unlimited = {APPS: Quota(QuotaKind.TOTAL, None)}
    none = {APPS: Quota(QuotaKind.TOTAL, 0)}
    assert effective_limit(LimitFacts(active_plans=(SMALL, unlimited)), APPS).limit is None
    assert effective_limit(LimitFacts(active_plans=(none,)), APPS).limit == 0
    assert not EffectiveLimit(0, LimitSource.SUBSCRIPTION).allows(1)


def test_rung_4_restrictive_defaults_without_an_active_subscription() -> None:
    facts = LimitFacts(active_plans=())
    assert effective_limit(facts, APPS) == EffectiveLimit(1, LimitSource.RESTRICTIVE_DEFAULT)
    assert effective_limit(facts, "knowledge_base.max_total_count").limit == 1
    assert effective_limit(facts, MESSAGES) == EffectiveLimit(0, LimitSource.RESTRICTIVE_DEFAULT)
    assert dict(SEED_RESTRICTIVE_DEFAULTS) == {APPS: 1, "knowledge_base.max_total_count": 1}


def test_allows_counts_what_the_write_would_add() -> None:
    limit = EffectiveLimit(3, LimitSource.SUBSCRIPTION)
    assert limit.allows(3)
    assert not limit.allows(4)
    assert EffectiveLimit(None, LimitSource.SUBSCRIPTION).allows(10**15)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    ("anchor", "moment", "start", "end"),
    [
        (utc(2026, 1, 31, 9), utc(2026, 2, 10), utc(2026, 1, 31, 9), utc(2026, 2, 28, 9)),
        (utc(2026, 1, 31, 9), utc(2026, 2, 28, 9), utc(2026, 2, 28, 9), utc(2026, 3, 31, 9)),  # clamps, comes back
        (utc(2026, 1, 31, 9), utc(2026, 3, 31, 8), utc(2026, 2, 28, 9), utc(2026, 3, 31, 9)),
        (utc(2026, 1, 31, 9), utc(2026, 4, 15), utc(2026, 3, 31, 9), utc(2026, 4, 30, 9)),
        (utc(2028, 1, 31), utc(2028, 2, 29, 12), utc(2028, 2, 29), utc(2028, 3, 31)),  # leap year
        (utc(2024, 2, 29), utc(2025, 2, 28, 1), utc(2025, 2, 28), utc(2025, 3, 29)),  # a leap-day anchor
        (utc(2026, 3, 15), utc(2026, 12, 20), utc(2026, 12, 15), utc(2027, 1, 15)),  # across the year
        (utc(2026, 3, 15), utc(2026, 3, 1), utc(2026, 2, 15), utc(2026, 3, 15)),  # before the anchor
    ],
)
def test_periods_are_anchored_and_clamp_at_month_ends(
    anchor: datetime, moment: datetime, start: datetime, end: datetime
) -> None:
    period = period_containing(moment, anchor)
    assert period == Period(start, end)
    assert period.contains(moment)


@pytest.mark.parametrize(
    ("moment", "start", "end"),
    [
        (utc(2026, 2, 14, 23, 59), utc(2026, 2, 1), utc(2026, 3, 1)),
        (utc(2028, 2, 29), utc(2028, 2, 1), utc(2028, 3, 1)),
        (utc(2026, 12, 31, 23, 59, 59), utc(2026, 12, 1), utc(2027, 1, 1)),
    ],
)
def test_without_a_subscription_periods_are_calendar_months_in_utc(
    moment: datetime, start: datetime, end: datetime
) -> None:
    assert period_containing(moment) == Period(start, end)


def test_consecutive_periods_tile_time_without_gaps() -> None:
    anchor = utc(2027, 1, 31, 13, 30)
    period = period_containing(anchor, anchor)
    for _ in range(30):
        following = period_containing(period.end, anchor)
        assert following.start == period.end
        period = following
    assert add_months(anchor, 1) == utc(2027, 2, 28, 13, 30)
