"""The usage breakdown (seed 002): the credit cost of an account's usage events by day, by agent or by line item.

Costs are summed in Python, not SQL: an event's cost is stored as exact decimal text on SQLite (``DecimalText``),
which SQL would sum as a float. The read streams only the period's events of one account (indexed by account and
time), so it costs what that period holds, not what the table holds.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.billing.usage.models import UsageEvent

NO_AGENT = "(no agent)"


class BreakdownBy(StrEnum):
    DAY = "day"
    AGENT = "agent"
    LINE_ITEM = "line_item"


Event = tuple[datetime, str | None, list[dict[str, Any]], Decimal]


def add_event(totals: dict[str, Decimal], event: Event, by: BreakdownBy) -> None:
    """Add one event's cost to its bucket. By line item, the cost is split as the event's items say (the ``type``
    of each: llm, tool, storage)."""
    occurred_at, agent, line_items, cost = event
    if by is BreakdownBy.DAY:
        totals[occurred_at.date().isoformat()] += cost
    elif by is BreakdownBy.AGENT:
        totals[agent or NO_AGENT] += cost
    else:
        for item in line_items:
            totals[str(item.get("type", "other"))] += Decimal(str(item.get("cost", "0")))


def ordered(totals: dict[str, Decimal], by: BreakdownBy) -> list[tuple[str, Decimal]]:
    """Days in date order; agents and line items by cost, largest first, then by name."""
    if by is BreakdownBy.DAY:
        return sorted(totals.items())
    return sorted(totals.items(), key=lambda pair: (-pair[1], pair[0]))


def breakdown(events: Iterable[Event], by: BreakdownBy) -> list[tuple[str, Decimal]]:
    """(label, cost) pairs of the events, bucketed ``by`` day, agent or line item."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for event in events:
        add_event(totals, event, by)
    return ordered(totals, by)


async def usage_breakdown(
    session: AsyncSession, *, account_id: uuid.UUID, start: datetime, end: datetime, by: BreakdownBy
) -> list[tuple[str, Decimal]]:
    """The breakdown of the account's events in [start, end), summed as the rows stream in."""
    result = await session.stream(
        select(UsageEvent.occurred_at, UsageEvent.agent, UsageEvent.line_items, UsageEvent.cost)
        .where(UsageEvent.account_id == account_id, UsageEvent.occurred_at >= start, UsageEvent.occurred_at < end)
        .execution_options(yield_per=1000)
    )
    totals: dict[str, Decimal] = defaultdict(Decimal)
    async for row in result:
        add_event(totals, (row.occurred_at, row.agent, row.line_items, row.cost), by)
    return ordered(totals, by)
