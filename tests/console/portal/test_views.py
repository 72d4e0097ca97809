"""The pure parts of the portal: how a limits-report entry reads (seed 004), the trial countdown, plan cells and the
usage breakdown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from license_server.billing.periods import Period
from license_server.billing.plans.terms import BillingTerms
from license_server.billing.usage.breakdown import NONE_KEY, BreakdownBy, break_down
from license_server.console.portal.views import (
    LimitState,
    limit_label,
    limit_row,
    plan_comparison,
    quota_cell,
    trial_days_left,
    usage_sections,
)

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def test_an_entry_without_limit_is_unlimited_and_limit_zero_is_not_available() -> None:
    assert limit_row({"key": "members", "group": "total", "used": 4}).state is LimitState.UNLIMITED
    zero = limit_row({"key": "kb", "group": "total", "used": 0, "limit": 0, "remaining": 0})
    assert zero.state is LimitState.NOT_AVAILABLE
    assert zero.percent == 0


def test_a_bar_counts_holds_rounds_down_and_stops_at_100() -> None:
    row = limit_row({"key": "messages", "group": "monthly", "used": 1, "held": 1, "limit": 3, "remaining": 1})
    assert (row.state, row.percent, row.at_cap) == (LimitState.BAR, 66, False)
    over = limit_row({"key": "apps", "group": "total", "used": 12, "limit": 10, "remaining": 0})
    assert (over.percent, over.at_cap) == (100, True)


def test_sections_split_by_group_and_reset_at_the_period_end() -> None:
    report = {
        "plan": "pro",
        "period_start": "2026-06-01T00:00:00+00:00",
        "period_end": "2026-07-01T00:00:00+00:00",
        "limits": [
            {"key": "apps", "group": "total", "used": 1, "limit": 2, "remaining": 1},
            {"key": "messages", "group": "monthly", "used": 0},
        ],
    }
    sections = usage_sections(report)
    assert [r.key for r in sections.total] == ["apps"]
    assert [r.key for r in sections.monthly] == ["messages"]
    assert sections.resets_at == datetime(2026, 7, 1, tzinfo=UTC)


def test_labels_read_as_words() -> None:
    assert limit_label("app.max_total_count") == "App max total count"
    assert limit_label("vector_space_mb") == "Vector space mb"


def test_the_trial_countdown_counts_a_started_day() -> None:
    assert trial_days_left(NOW + timedelta(days=14), NOW) == 14
    assert trial_days_left(NOW + timedelta(hours=1), NOW) == 1
    assert trial_days_left(NOW + timedelta(days=2, seconds=1), NOW) == 3
    assert trial_days_left(NOW, NOW) == 0
    assert trial_days_left(NOW - timedelta(days=1), NOW) == 0


def test_plans_compare_cheapest_first_over_every_key() -> None:
    free = BillingTerms.model_validate({"quotas": {"apps": {"kind": "total", "limit": 1}}})
    pro = BillingTerms.model_validate(
        {"price": "59", "quotas": {"messages": {"kind": "monthly", "limit": 5000}, "kb": {"kind": "total", "limit": 0}}}
    )
    comparison = plan_comparison([("pro", "Pro", pro), ("free", "Free", free)], "pro")
    assert [(c.code, c.current) for c in comparison.plans] == [("free", False), ("pro", True)]
    assert comparison.quota_keys == ["apps", "kb", "messages"]
    assert quota_cell(free, "messages") == "Unlimited"  # a key the plan does not define
    assert quota_cell(pro, "kb") == "Not available on plan"
    assert quota_cell(pro, "messages") == "5,000 / month"


def test_the_chart_sums_exactly_by_day_agent_and_line_item_in_drawing_order() -> None:
    day1, day2 = NOW, NOW + timedelta(days=1)
    events = [
        (day1, "a", "chat", [{"type": "llm", "cost": "0.1"}, {"type": "tool", "cost": "0.2"}], Decimal("0.3")),
        (day1, None, None, [{"type": "llm", "cost": "0.2"}], Decimal("0.2")),
        (day2, "a", "chat", [{"type": "storage", "cost": "1"}], Decimal("1")),
    ]
    breakdown = break_down(Period(day1, day1 + timedelta(days=30)), events)
    assert breakdown.chart(BreakdownBy.DAY) == [("2026-06-01", Decimal("0.5")), ("2026-06-02", Decimal("1"))]
    assert breakdown.chart(BreakdownBy.AGENT) == [("a", Decimal("1.3")), (NONE_KEY, Decimal("0.2"))]
    assert breakdown.chart(BreakdownBy.LINE_ITEM) == [
        ("storage", Decimal("1")),
        ("llm", Decimal("0.3")),
        ("tool", Decimal("0.2")),
    ]
