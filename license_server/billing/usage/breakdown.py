"""The usage breakdown of an account's period (seed 002's usage chart): cost by day, by agent, by app and by line
item (``llm``, ``tool``, ``storage``), from the usage events. Summed in Python, exactly: an event's cost is decimal
text on SQLite, which SQL would add as floats."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.billing.money import decimal_text
from license_server.billing.periods import Period
from license_server.billing.usage.models import UsageEvent

ZERO = Decimal(0)
NONE_KEY = "(none)"  # events without an agent (or app)


class BreakdownBy(StrEnum):
    """The dimensions a usage chart is drawn by (the console's chart tabs)."""

    DAY = "day"
    AGENT = "agent"
    LINE_ITEM = "line_item"


@dataclass(frozen=True)
class Breakdown:
    period: Period
    events: int
    total: Decimal
    by_day: dict[str, Decimal]
    by_agent: dict[str, Decimal]
    by_app: dict[str, Decimal]
    by_line_item: dict[str, Decimal]  # llm | tool | storage
    by_line_item_name: dict[str, Decimal]  # "llm:gpt-4o", "tool:web_search", ...

    def chart(self, by: BreakdownBy) -> list[tuple[str, Decimal]]:
        """(label, cost) pairs to draw: days in date order; agents and line items by cost, largest first, then name."""
        if by is BreakdownBy.DAY:
            return sorted(self.by_day.items())
        totals = self.by_agent if by is BreakdownBy.AGENT else self.by_line_item
        return sorted(totals.items(), key=lambda pair: (-pair[1], pair[0]))

    def as_json(self) -> dict[str, Any]:
        def texts(values: dict[str, Decimal]) -> dict[str, str]:
            return {key: decimal_text(value) for key, value in sorted(values.items())}

        return {
            "period_start": self.period.start.isoformat(),
            "period_end": self.period.end.isoformat(),
            "events": self.events,
            "total": decimal_text(self.total),
            "by_day": texts(self.by_day),
            "by_agent": texts(self.by_agent),
            "by_app": texts(self.by_app),
            "by_line_item": texts(self.by_line_item),
            "by_line_item_name": texts(self.by_line_item_name),
        }


def break_down(
    period: Period, events: Iterable[tuple[datetime, str | None, str | None, list[dict[str, Any]], Decimal]]
) -> Breakdown:
    """The rule: each event's cost to its UTC day, agent and app; each line item's cost to its type and name."""
    by_day: dict[str, Decimal] = defaultdict(lambda: ZERO)
    by_agent: dict[str, Decimal] = defaultdict(lambda: ZERO)
    by_app: dict[str, Decimal] = defaultdict(lambda: ZERO)
    by_item: dict[str, Decimal] = defaultdict(lambda: ZERO)
    by_name: dict[str, Decimal] = defaultdict(lambda: ZERO)
    count, total = 0, ZERO
    for occurred_at, agent, app, items, cost in events:
        count += 1
        total += cost
        by_day[occurred_at.date().isoformat()] += cost
        by_agent[agent or NONE_KEY] += cost
        by_app[app or NONE_KEY] += cost
        for item in items:
            item_cost = Decimal(str(item.get("cost", "0")))
            by_item[str(item.get("type"))] += item_cost
            by_name[f"{item.get('type')}:{item.get('name')}"] += item_cost
    return Breakdown(period, count, total, dict(by_day), dict(by_agent), dict(by_app), dict(by_item), dict(by_name))


async def usage_breakdown(session: AsyncSession, *, account_id: uuid.UUID, period: Period) -> Breakdown:
    rows = await session.stream(
        select(UsageEvent.occurred_at, UsageEvent.agent, UsageEvent.app, UsageEvent.line_items, UsageEvent.cost)
        .where(
            UsageEvent.account_id == account_id,
            UsageEvent.occurred_at >= period.start,
            UsageEvent.occurred_at < period.end,
        )
        .execution_options(yield_per=2000)
    )
    return break_down(period, [(r[0], r[1], r[2], list(r[3] or []), r[4]) async for r in rows])
