"""The upgrade proration rule, pure and exact.

An upgrade takes effect at once. For the days left in the current period, the account is credited the unused part
of the old plan's fee and charged the same part of the new plan's fee:

    days_left   = whole days from the change to the period end (the day in progress is used on the old plan)
    period_days = the period's length in days (periods start at the anchor's time of day, so it is whole)
    credit      = old_price * days_left / period_days, rounded half-up to the currency's cents
    charge      = new_price * days_left / period_days, rounded the same way
    net         = charge - credit (what the next invoice adds; never rounded again)

Each of the two lines is rounded once, where it is computed; the invoice sums the lines as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from license_server.billing.periods import Period

CENT = Decimal("0.01")


@dataclass(frozen=True)
class Proration:
    days_left: int
    period_days: int
    credit: Decimal  # the unused part of the old fee, credited
    charge: Decimal  # the same part of the new fee, charged

    @property
    def net(self) -> Decimal:
        return self.charge - self.credit


def _part(price: Decimal, days_left: int, period_days: int) -> Decimal:
    return (price * days_left / period_days).quantize(CENT, rounding=ROUND_HALF_UP)


def prorate_upgrade(*, old_price: Decimal, new_price: Decimal, period: Period, now: datetime) -> Proration:
    period_days = (period.end - period.start) // timedelta(days=1)
    days_left = max(0, min(period_days, (period.end - now) // timedelta(days=1)))
    return Proration(
        days_left=days_left,
        period_days=period_days,
        credit=_part(old_price, days_left, period_days),
        charge=_part(new_price, days_left, period_days),
    )
