"""Billing periods. Pure: an anchor (or none) and an instant in, the period containing the instant out.

With a subscription, periods start at the anchor and roll monthly; an anchor late in the month clamps to shorter
months and comes back (Jan 31 -> Feb 28/29 -> Mar 31), because every period start is computed from the anchor, never
from the previous start. Without a subscription, periods are calendar months in UTC.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class Period:
    start: datetime  # inclusive
    end: datetime  # exclusive

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


def add_months(anchor: datetime, months: int) -> datetime:
    """The anchor moved by whole months, its day clamped to the target month's length."""
    index = anchor.year * 12 + (anchor.month - 1) + months
    year, month = divmod(index, 12)
    day = min(anchor.day, calendar.monthrange(year, month + 1)[1])
    return anchor.replace(year=year, month=month + 1, day=day)


def calendar_month(moment: datetime) -> Period:
    moment = moment.astimezone(UTC)
    start = datetime(moment.year, moment.month, 1, tzinfo=UTC)
    return Period(start, add_months(start, 1))


def period_containing(moment: datetime, anchor: datetime | None = None) -> Period:
    """The monthly period that contains ``moment``: anchored at ``anchor``, or the calendar month without one.

    Before the anchor, periods run backwards from it the same way (an event dated before a subscription started).
    """
    if anchor is None:
        return calendar_month(moment)
    anchor, moment = anchor.astimezone(UTC), moment.astimezone(UTC)
    months = (moment.year - anchor.year) * 12 + (moment.month - anchor.month)
    start = add_months(anchor, months)
    if start > moment:
        months -= 1
        start = add_months(anchor, months)
    return Period(start, add_months(anchor, months + 1))
