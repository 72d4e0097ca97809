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
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType
from pydantic import TypeAdapter, ValidationError

from license_server.billing.money import decimal_text
from license_server.billing.schemas import MAX_EVENTS_PER_BATCH
from license_server.billing.usage.service import PricedEvent
from license_server.schemas_common import UTCTimestamp

# ``\Z``, not ``$``: Python's ``$`` also matches before a final newline, which the pydantic patterns refuse.
_Id = Annotated[str, msgspec.Meta(pattern=r"^[\x21-\x7e]{1,200}\Z")]
_DIMENSION = re.compile(r"[\x21-\x7e]{1,200}").fullmatch
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,99}").fullmatch
_PLAIN_DECIMAL = re.compile(r"[0-9]{1,20}(?:\.[0-9]{1,10})?").fullmatch
# Every JSON string of a body without backslashes, and whether a colon follows it (then it is a key).
_STRING_OR_KEY = re.compile(rb'"[^"]*"[ \t\r\n]*(:?)')
_AMOUNT_LIMIT = 10**20  # Amount: below 10^20, at most 10 decimal places
_TIMESTAMP: TypeAdapter[datetime] = TypeAdapter(UTCTimestamp)
_Amount = int | str | None | UnsetType


# Optional fields default to UNSET, not None: the keys present are counted (see ``decode_batch``).
class _LineItem(msgspec.Struct, forbid_unknown_fields=True):
    type: Literal["llm", "tool", "storage"]
    name: str
    quantity: _Amount = UNSET
    cost: _Amount = UNSET


class _Event(msgspec.Struct, forbid_unknown_fields=True):
    id: _Id
    occurred_at: str | UnsetType | None = UNSET
    agent: str | UnsetType | None = UNSET
    app: str | UnsetType | None = UNSET
    line_items: Annotated[list[_LineItem], msgspec.Meta(max_length=100)] | UnsetType = UNSET


class _Batch(msgspec.Struct, forbid_unknown_fields=True):
    events: Annotated[list[_Event], msgspec.Meta(min_length=1, max_length=MAX_EVENTS_PER_BATCH)]


_DECODER = msgspec.json.Decoder(_Batch)
_CANONICAL = msgspec.json.Encoder(order="sorted")


@dataclass(frozen=True, slots=True)
class _Item:
    type: str
    name: str
    quantity: str | None  # decimal_text of the amount sent
    cost: str | None


@dataclass(frozen=True, slots=True)
class _Checked:
    id: str
    occurred_at: tuple[datetime, str] | None  # the instant and its JSON form (as ``model_dump(mode="json")``)
    agent: str | None
    app: str | None
    items: list[_Item]


@dataclass(frozen=True, slots=True)
class EventBatch:
    """A body inside the fast path's subset, checked but not yet priced (that needs the account's rate card)."""

    events: list[_Checked]


def decode_batch(raw: bytes) -> EventBatch | None:
    """The batch, or None when the body is not plainly valid (the pydantic path then judges it).

    The app-wide body rules are proven here rather than by parsing the body a second time: the structs nest five
    levels at most and msgspec refuses any other shape at its first token (so nothing deeper is ever walked), and
    a duplicated key shows as one more key in the body than the fields the structs found present."""
    if b"\\" in raw:  # no escapes: every '"' then delimits a string, which the key count relies on
        return None
    try:
        batch = _DECODER.decode(raw)
    except msgspec.DecodeError:  # ValidationError included
        return None
    keys = 1  # "events"
    strings: set[str] = set()
    amounts: dict[int | str, str | None] = {}
    timestamps: dict[str, tuple[datetime, str] | None] = {}
    checked: list[_Checked] = []
    for event in batch.events:
        keys += 1
        occurred_at: tuple[datetime, str] | None = None
        if event.occurred_at is not UNSET:
            keys += 1
            if event.occurred_at is not None:
                if event.occurred_at not in timestamps:
                    timestamps[event.occurred_at] = _timestamp(event.occurred_at)
                occurred_at = timestamps[event.occurred_at]
                if occurred_at is None:
                    return None
        dimensions: list[str | None] = []
        for dimension in (event.agent, event.app):
            if dimension is not UNSET:
                keys += 1
            if dimension is UNSET or dimension is None:
                dimensions.append(None)
                continue
            if dimension not in strings:
                if not _DIMENSION(dimension):
                    return None
                strings.add(dimension)
            dimensions.append(dimension)
        items: list[_Item] = []
        if event.line_items is not UNSET:
            keys += 1
            for item in event.line_items:
                keys += 2 + (item.quantity is not UNSET) + (item.cost is not UNSET)
                quantity = None if item.quantity is UNSET or item.quantity is None else item.quantity
                cost = None if item.cost is UNSET or item.cost is None else item.cost
                if (quantity is None) == (cost is None):
                    return None
                amount = quantity if cost is None else cost
                assert amount is not None
                if amount not in amounts:
                    amounts[amount] = _amount_text(amount)
                text = amounts[amount]
                name = "\0" + item.name  # cached apart from the dimensions (a name's pattern is narrower)
                if text is None or (name not in strings and not _NAME(item.name)):
                    return None
                strings.add(name)
                items.append(
                    _Item(item.type, item.name, text if cost is None else None, None if cost is None else text)
                )
        checked.append(_Checked(event.id, occurred_at, dimensions[0], dimensions[1], items))
    if _STRING_OR_KEY.findall(raw).count(b":") != keys:  # a key appears twice in some object
        return None
    return EventBatch(checked)


def _timestamp(text: str) -> tuple[datetime, str] | None:
    try:
        parsed = _TIMESTAMP.validate_python(text)
    except ValidationError:
        return None
    return parsed, _TIMESTAMP.dump_python(parsed, mode="json")


def _amount_text(value: int | str) -> str | None:
    """``decimal_text`` of the amount pydantic's ``Amount`` would read, or None outside the plain spellings."""
    if isinstance(value, int):
        return decimal_text(Decimal(value)) if 0 <= value < _AMOUNT_LIMIT else None
    return decimal_text(Decimal(value)) if _PLAIN_DECIMAL(value) else None


def price_batch(batch: EventBatch, rate_card: Mapping[str, Decimal], now: datetime) -> list[PricedEvent] | None:
    """Each event priced (given costs, or quantity times the rate card's unit price) and digested, as the pydantic
    path prices them; None for an item the rate card has no price for (the pydantic path then answers
    ``unpriced_line_item``)."""
    priced_events: list[PricedEvent] = []
    costs: dict[tuple[str, str, str], tuple[str, Decimal] | None] = {}
    given: dict[str, Decimal] = {}
    for event in batch.events:
        body: dict[str, Any] = {"id": event.id}
        if event.occurred_at is not None:
            body["occurred_at"] = event.occurred_at[1]
        if event.agent is not None:
            body["agent"] = event.agent
        if event.app is not None:
            body["app"] = event.app
        sent: list[dict[str, str]] = []
        priced: list[dict[str, str]] = []
        total = Decimal(0)
        for item in event.items:
            if item.cost is not None:
                line = {"type": item.type, "name": item.name, "cost": item.cost}
                sent.append(line)
                priced.append(line)
                if item.cost not in given:
                    given[item.cost] = Decimal(item.cost)
                total += given[item.cost]
                continue
            assert item.quantity is not None
            key = (item.type, item.name, item.quantity)
            if key not in costs:
                unit = rate_card.get(f"{item.type}:{item.name}")
                cost = None if unit is None else Decimal(item.quantity) * unit
                costs[key] = None if cost is None else (decimal_text(cost), cost)
            known = costs[key]
            if known is None:
                return None
            sent.append({"type": item.type, "name": item.name, "quantity": item.quantity})
            priced.append({"type": item.type, "name": item.name, "quantity": item.quantity, "cost": known[0]})
            total += known[1]
        body["line_items"] = sent
        priced_events.append(
            PricedEvent(
                event_id=event.id,
                occurred_at=now if event.occurred_at is None else event.occurred_at[0],
                agent=event.agent,
                app=event.app,
                line_items=priced,
                cost=total,
                digest=hashlib.sha256(_CANONICAL.encode(body)).hexdigest(),
            )
        )
    return priced_events
