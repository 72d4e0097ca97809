"""The invoice rule as a pure function: which lines, exact line amounts, the total rounded once (half-up to the
currency's minor unit), a yearly plan's fee only in the month its year starts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from license_server.billing.invoices.calculation import (
    PAST_DUE,
    InvoiceFacts,
    LineKind,
    compute_invoice,
    display_status,
    line_amount_text,
    round_total,
)
from license_server.billing.invoices.service import invoice_period, plan_period
from license_server.billing.periods import Period

MAY = Period(datetime(2026, 5, 15, tzinfo=UTC), datetime(2026, 6, 15, tzinfo=UTC))
APRIL = Period(datetime(2026, 4, 15, tzinfo=UTC), datetime(2026, 5, 15, tzinfo=UTC))


def facts(**changes: object) -> InvoiceFacts:
    values: dict[str, object] = {
        "currency": "USD",
        "plan_code": "growth",
        "plan_name": "Growth Monthly",
        "plan_price": Decimal(399),
        "interval": "month",
        "flex_credit_price": Decimal(3),
        "period": MAY,
        "plan_period": MAY,
        "arrears": APRIL,
        "flex_used": Decimal(30),
        "metered": {},
    }
    values.update(changes)
    return InvoiceFacts(**values)  # type: ignore[arg-type]


def test_seed_003_plan_in_advance_and_flex_in_arrears() -> None:
    invoice = compute_invoice(facts())
    assert [(line.kind, line.amount, line.period_start, line.period_end) for line in invoice.lines] == [
        (LineKind.PLAN, Decimal(399), MAY.start, MAY.end),
        (LineKind.FLEX, Decimal(90), APRIL.start, APRIL.end),
    ]
    assert invoice.total == Decimal("489.00")


def test_the_total_is_rounded_once_not_each_line() -> None:
    """Three metered lines of 0.004 each: rounded per line they would be 0.00; the exact sum 0.012 rounds to 0.01."""
    invoice = compute_invoice(
        facts(
            plan_price=Decimal(0),
            flex_used=Decimal(0),
            metered={"llm": Decimal("0.004"), "tool": Decimal("0.004"), "storage": Decimal("0.004")},
        )
    )
    assert [line.amount for line in invoice.lines] == [Decimal("0.004")] * 3
    assert [line.description.split(" usage")[0] for line in invoice.lines] == [
        "Metered llm",
        "Metered tool",
        "Metered storage",
    ]
    assert (invoice.subtotal, invoice.total) == (Decimal("0.012"), Decimal("0.01"))


def test_half_up_to_the_minor_unit_of_the_currency() -> None:
    assert round_total(Decimal("0.005"), "USD") == Decimal("0.01")
    assert round_total(Decimal("0.0049999"), "USD") == Decimal("0.00")
    assert round_total(Decimal("100.5"), "JPY") == Decimal(101)
    assert round_total(Decimal("1.0005"), "KWD") == Decimal("1.001")
    jpy = compute_invoice(
        facts(currency="JPY", plan_price=Decimal(1000), flex_credit_price=Decimal("2.5"), flex_used=Decimal(3))
    )
    assert jpy.total == Decimal(1008)  # 1000 + 7.5, half-up


def test_flex_at_a_fractional_price_stays_exact_on_the_line() -> None:
    invoice = compute_invoice(facts(flex_used=Decimal("12.345678"), flex_credit_price=Decimal("0.0375")))
    flex = invoice.lines[1]
    assert flex.amount == Decimal("0.462962925")
    assert line_amount_text(flex.amount, "USD") == "0.462962925"
    assert line_amount_text(Decimal(90), "USD") == "90.00"
    assert invoice.total == Decimal("399.46")


def test_nothing_to_bill_is_an_empty_invoice_of_zero() -> None:
    invoice = compute_invoice(facts(plan_price=Decimal(0), flex_used=Decimal(0)))
    assert (invoice.lines, invoice.total) == ((), Decimal("0.00"))


def test_a_yearly_plan_bills_its_fee_in_the_month_its_year_starts_and_flex_every_month() -> None:
    anchor = datetime(2026, 1, 31, tzinfo=UTC)
    first = invoice_period(datetime(2026, 1, 31, 1, tzinfo=UTC), anchor)
    assert plan_period(first, anchor, "year") == Period(anchor, datetime(2027, 1, 31, tzinfo=UTC))
    february = invoice_period(datetime(2026, 3, 1, tzinfo=UTC), anchor)
    assert february.start == datetime(2026, 2, 28, tzinfo=UTC)  # the month-end anchor clamps
    assert plan_period(february, anchor, "year") is None
    invoice = compute_invoice(facts(interval="year", period=february, plan_period=None))
    assert [line.kind for line in invoice.lines] == [LineKind.FLEX]


def test_an_open_invoice_reads_past_due_from_its_due_moment_and_no_other_status_ever_does() -> None:
    due = datetime(2026, 6, 15, 12, tzinfo=UTC)
    assert display_status("open", due, due - timedelta(microseconds=1)) == "open"
    assert display_status("open", due, due) == PAST_DUE
    assert display_status("open", due, due + timedelta(days=30)) == PAST_DUE
    for settled in ("paid", "void"):
        assert display_status(settled, due, due + timedelta(days=30)) == settled
    assert display_status("open", None, due) == "open"
