"""The rule: an invoice's lines and totals from facts. Pure: no database, no clock.

Seed 003: the invoice at a period start bills the plan fee in advance for the new period, and in arrears the flex
credits used before it (at the plan's flex credit price); seed 002 adds metered charges (usage events' cost), one
line per line-item type. Line amounts are exact; the total is rounded once, half-up to the currency's minor unit.
The issuing service and the preview call this same function, on the facts at issue or the facts so far.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from license_server.billing.invoices.models import InvoiceStatus
from license_server.billing.periods import Period

ZERO = Decimal(0)
# ISO 4217 minor units of the currencies that do not have two; every other currency has two.
_MINOR_UNITS = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0, "RWF": 0, "UGX": 0,
    "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}  # fmt: skip
# The order metered lines appear in (seed 002's three line items); other types follow alphabetically.
METERED_ORDER = ("llm", "tool", "storage")


class LineKind(StrEnum):
    PLAN = "plan"  # the plan fee, in advance for the plan's interval
    FLEX = "flex"  # flex credits used in the arrears window, at the plan's flex credit price
    METERED = "metered"  # usage events' cost in the arrears window, one line per line-item type


def minor_unit_digits(currency: str) -> int:
    return _MINOR_UNITS.get(currency.upper(), 2)


def round_total(amount: Decimal, currency: str) -> Decimal:
    """Half-up to the currency's minor unit: 12.345 USD -> 12.35, 100.5 JPY -> 101."""
    return amount.quantize(Decimal(1).scaleb(-minor_unit_digits(currency)), rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class InvoiceFacts:
    currency: str
    plan_code: str
    plan_name: str
    plan_price: Decimal  # the fee for one interval
    interval: str  # "month" | "year"
    flex_credit_price: Decimal | None
    period: Period  # the monthly invoice period (the invoice's key)
    plan_period: Period | None  # the plan interval billed in advance: None in a yearly plan's other months
    arrears: Period  # flex and metered usage of this window are billed in arrears
    flex_used: Decimal
    metered: Mapping[str, Decimal]  # line-item type -> exact cost in the window


@dataclass(frozen=True)
class Line:
    kind: LineKind
    description: str
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal
    period_start: datetime
    period_end: datetime


@dataclass(frozen=True)
class ComputedInvoice:
    currency: str
    lines: tuple[Line, ...]
    subtotal: Decimal  # exact
    total: Decimal  # rounded once


def _day(moment: datetime) -> str:
    return f"{moment:%b} {moment.day}, {moment.year}"


def _window(start: datetime, end: datetime) -> str:
    """Seed 003 writes the window with its last day: "April 15th-May 14th" for [Apr 15, May 15)."""
    last = end - timedelta(microseconds=1)
    return f"{_day(start)} - {_day(last)}"


def compute_invoice(facts: InvoiceFacts) -> ComputedInvoice:
    lines: list[Line] = []
    if facts.plan_period is not None and facts.plan_price > ZERO:
        lines.append(
            Line(
                LineKind.PLAN,
                f"{facts.plan_name} ({'yearly' if facts.interval == 'year' else 'monthly'} plan), "
                f"{_window(facts.plan_period.start, facts.plan_period.end)}",
                Decimal(1),
                facts.plan_price,
                facts.plan_price,
                facts.plan_period.start,
                facts.plan_period.end,
            )
        )
    if facts.flex_used > ZERO:
        price = facts.flex_credit_price if facts.flex_credit_price is not None else ZERO
        lines.append(
            Line(
                LineKind.FLEX,
                f"{_number(facts.flex_used)} flex credits, {_window(facts.arrears.start, facts.arrears.end)}",
                facts.flex_used,
                price,
                facts.flex_used * price,
                facts.arrears.start,
                facts.arrears.end,
            )
        )
    ordered = [t for t in METERED_ORDER if t in facts.metered] + sorted(set(facts.metered) - set(METERED_ORDER))
    for item_type in ordered:
        cost = facts.metered[item_type]
        if cost == ZERO:
            continue
        lines.append(
            Line(
                LineKind.METERED,
                f"Metered {item_type} usage, {_window(facts.arrears.start, facts.arrears.end)}",
                Decimal(1),
                cost,
                cost,
                facts.arrears.start,
                facts.arrears.end,
            )
        )
    subtotal = sum((line.amount for line in lines), ZERO)
    return ComputedInvoice(facts.currency, tuple(lines), subtotal, round_total(subtotal, facts.currency))


def _number(value: Decimal) -> str:
    return format(value.normalize(), "f")


def money_text(amount: Decimal, currency: str) -> str:
    """A rounded amount with its currency's digits: "489.00", for totals on the PDF and in JSON."""
    return format(round_total(amount, currency), "f")


def line_amount_text(amount: Decimal, currency: str) -> str:
    """A line's exact amount: with the currency's digits when that is exact ("90.00"), else every digit it has
    ("0.0125"): lines are never rounded, only the total is."""
    rounded = round_total(amount, currency)
    return format(rounded, "f") if rounded == amount else _number(amount)


# -- display ----------------------------------------------------------------------------------------------------
PAST_DUE = "past_due"  # not a stored status: an open invoice whose due date has come (seed 002's red flag)


def display_status(status: str, due_at: datetime | None, now: datetime) -> str:
    """The status an invoice is shown with: its stored one, except an open invoice due by now reads past_due.

    Stored statuses never move on their own (only a payment or a void moves them), so being overdue is a reading
    of the clock, made here once for every page and API that shows an invoice."""
    if status == InvoiceStatus.OPEN and due_at is not None and due_at <= now:
        return PAST_DUE
    return status
