"""The server-drawn SVG charts: exact values, escaped labels, days without usage drawn as zero, no JavaScript."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime
from decimal import Decimal

from license_server.console.charts import Point, bar_chart, daily_totals, line_chart, running_balance

SVG = "{http://www.w3.org/2000/svg}"


def test_daily_totals_sum_per_utc_day_and_fill_empty_days_with_zero() -> None:
    entries = [
        (datetime(2026, 6, 1, 1, tzinfo=UTC), 5),
        (datetime(2026, 6, 1, 23, tzinfo=UTC), 7),
        (datetime(2026, 6, 3, 12, tzinfo=UTC), 2),
        (datetime(2026, 5, 31, 12, tzinfo=UTC), 100),  # before the range: left out
    ]
    points = daily_totals(entries, first=date(2026, 6, 1), last=date(2026, 6, 3))
    assert points == [Point("06-01", 12), Point("06-02", 0), Point("06-03", 2)]


def test_running_balance_is_exact_decimal_arithmetic() -> None:
    moments = [datetime(2026, 6, d, tzinfo=UTC) for d in (1, 2, 3)]
    points = running_balance(zip(moments, [Decimal("0.1"), Decimal("0.2"), Decimal("-0.3")], strict=True))
    assert [p.value for p in points] == [Decimal("0.1"), Decimal("0.3"), Decimal("0.0")]


def test_a_bar_chart_is_valid_svg_with_a_title_and_one_labelled_bar_per_point() -> None:
    svg = bar_chart([Point("06-01", 3), Point("<b>&", 9)], title="Usage & more", chart_id="u")
    root = ET.fromstring(svg)  # noqa: S314 - our own output, parsed to check it is well formed
    assert root.get("role") == "img"
    assert root.findtext(f"{SVG}title") == "Usage & more"
    bars = root.findall(f"{SVG}rect")
    assert [bar.findtext(f"{SVG}title") for bar in bars] == ["06-01: 3", "<b>&: 9"]
    heights = [Decimal(bar.get("height", "")) for bar in bars]
    assert heights[1] == 172  # the largest value fills the plot's height
    assert heights[0] == Decimal("57.3")  # 3/9 of it, in exact decimal
    assert "<script" not in svg


def test_a_line_chart_draws_negative_balances_at_zero_and_handles_no_points() -> None:
    svg = line_chart([Point("a", Decimal(10)), Point("b", Decimal(-5))], title="Balance", chart_id="b")
    circles = ET.fromstring(svg).findall(f"{SVG}circle")  # noqa: S314
    assert [c.findtext(f"{SVG}title") for c in circles] == ["a: 10", "b: -5"]
    assert Decimal(circles[1].get("cy", "")) == 184  # the x axis: zero
    assert ET.fromstring(line_chart([], title="Empty", chart_id="e")).findtext(f"{SVG}title") == "Empty"  # noqa: S314
