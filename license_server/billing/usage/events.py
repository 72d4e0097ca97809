"""A batch of usage events read, priced and digested in one pass over the raw body: the hot path of
``POST /v1/billing/accounts/{external_id}/events`` (up to 1,000 events a request).

msgspec decodes the body straight into structs whose rules are a strict subset of ``EventsIn`` (the pydantic model
that documents the route and words its errors): printable-ASCII ids and dimensions, amounts as integers or plain
decimal strings (``12``, ``"0.002"``; never a float, a sign, an exponent or blanks), no unknown field. A batch inside
the subset is one ``EventsIn`` would accept with the same values; anything else — any error, and anything merely
unusual (``"1e3"``, an unpriced line item) — is not judged here: the functions answer None and the route falls back
to ``EventsIn`` and ``service.price_line_items``, whose problem responses (the field named, e.g.
``events.3.line_items.0.cost``) stay the only ones. Nesting and duplicated keys are refused before this runs, by the
app-wide body rules (``json_bodies.py``).

What is stored is what the pydantic path stores: the line items as ``model_dump(mode="json")`` gives them plus their
cost, the same cost arithmetic, and the same request digest (sha-256 of the event's canonical JSON, so replays of
events recorded by either path compare equal).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
from pydantic import TypeAdapter, ValidationError

from license_server.billing.money import decimal_text
from license_server.billing.schemas import MAX_EVENTS_PER_BATCH
from license_server.billing.usage.service import PricedEvent
from license_server.schemas_common import UTCTimestamp

# ``\Z``, not ``$``: Python's ``$`` also matches before a final newline, which the pydantic patterns refuse.
_Printable = Annotated[str, msgspec.Meta(pattern=r"^[\x21-\x7e]{1,200}\Z")]
_Name = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,99}\Z")]
_PLAIN_DECIMAL = re.compile(r"[0-9]{1,20}(?:\.[0-9]{1,10})?").fullmatch
_AMOUNT_LIMIT = 10**20  # Amount: below 10^20, at most 10 decimal places
_TIMESTAMP: TypeAdapter[datetime] = TypeAdapter(UTCTimestamp)


class _LineItem(msgspec.Struct, forbid_unknown_fields=True):
    type: Literal["llm", "tool", "storage"]
    name: _Name
    quantity: int | str | None = None
    cost: int | str | None = None


class _Event(msgspec.Struct, forbid_unknown_fields=True):
    id: _Printable
    occurred_at: str | None = None
    agent: _Printable | None = None
    app: _Printable | None = None
    line_items: Annotated[list[_LineItem], msgspec.Meta(max_length=100)] = msgspec.field(default_factory=list)


class _Batch(msgspec.Struct, forbid_unknown_fields=True):
    events: Annotated[list[_Event], msgspec.Meta(min_length=1, max_length=MAX_EVENTS_PER_BATCH)]


_DECODER = msgspec.json.Decoder(_Batch)
_CANONICAL = msgspec.json.Encoder(order="sorted")


class EventBatch:
    """A body inside the fast path's subset, not yet priced (pricing needs the account's rate card)."""

    __slots__ = ("events",)

    def __init__(self, events: list[_Event]) -> None:
        self.events = events


def decode_batch(raw: bytes) -> EventBatch | None:
    """The batch, or None when the body is not plainly valid (the pydantic path then judges it)."""
    try:
        return EventBatch(_DECODER.decode(raw).events)
    except msgspec.DecodeError:  # ValidationError included
        return None


def _amount_text(value: int | str) -> str | None:
    """``decimal_text`` of the amount pydantic's ``Amount`` would read, or None outside the plain spellings."""
    if isinstance(value, int):
        return decimal_text(Decimal(value)) if 0 <= value < _AMOUNT_LIMIT else None
    return decimal_text(Decimal(value)) if _PLAIN_DECIMAL(value) else None


def price_batch(batch: EventBatch, rate_card: Mapping[str, Decimal], now: datetime) -> list[PricedEvent] | None:
    """Each event priced (given costs, or quantity times the rate card's unit price) and digested; None when an item
    falls outside the fast path (the pydantic path then answers, e.g. ``unpriced_line_item``)."""
    priced_events: list[PricedEvent] = []
    timestamps: dict[str, tuple[datetime, str]] = {}
    for event in batch.events:
        body: dict[str, Any] = {"id": event.id}
        occurred_at = now
        if event.occurred_at is not None:
            known = timestamps.get(event.occurred_at)
            if known is None:
                try:
                    parsed = _TIMESTAMP.validate_python(event.occurred_at)
                except ValidationError:
                    return None
                known = timestamps[event.occurred_at] = (parsed, _TIMESTAMP.dump_python(parsed, mode="json"))
            occurred_at, body["occurred_at"] = known
        if event.agent is not None:
            body["agent"] = event.agent
        if event.app is not None:
            body["app"] = event.app
        sent: list[dict[str, str]] = []
        priced: list[dict[str, str]] = []
        total = Decimal(0)
        for item in event.line_items:
            if (item.quantity is None) == (item.cost is None):
                return None
            if item.cost is not None:
                text = _amount_text(item.cost)
                if text is None:
                    return None
                line = {"type": item.type, "name": item.name, "cost": text}
                sent.append(line)
                priced.append(line)
                total += Decimal(text)
            else:
                assert item.quantity is not None
                quantity = _amount_text(item.quantity)
                unit = rate_card.get(f"{item.type}:{item.name}")
                if quantity is None or unit is None:
                    return None
                cost = Decimal(quantity) * unit
                sent.append({"type": item.type, "name": item.name, "quantity": quantity})
                priced.append({"type": item.type, "name": item.name, "quantity": quantity, "cost": decimal_text(cost)})
                total += cost
        body["line_items"] = sent
        priced_events.append(
            PricedEvent(
                event_id=event.id,
                occurred_at=occurred_at,
                agent=event.agent,
                app=event.app,
                line_items=priced,
                cost=total,
                digest=hashlib.sha256(_CANONICAL.encode(body)).hexdigest(),
            )
        )
    return priced_events
