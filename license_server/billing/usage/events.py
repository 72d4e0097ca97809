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
from typing import Annotated, Literal

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
# In a body without backslashes every '"' opens or closes a string, so a '"' before a colon (blanks between) closes
# a key, or opens a string value that starts with ':' (of the checked strings only ids and dimensions can).
_BLANKS_THEN_COLON = re.compile(rb'"[ \t\r\n]+:')
_AMOUNT_LIMIT = 10**20  # Amount: below 10^20, at most 10 decimal places
_TIMESTAMP: TypeAdapter[datetime] = TypeAdapter(UTCTimestamp)
_Amount = int | str | None | UnsetType


# Optional fields default to UNSET, not None: the keys present are counted (see ``decode_batch``).
class _LineItem(msgspec.Struct, forbid_unknown_fields=True, frozen=True):  # hashable: checked once per batch
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
_JSON = msgspec.json.Encoder()


class EventBatch:
    """A body inside the fast path's subset, checked but not yet priced (that needs the account's rate card)."""

    __slots__ = ("events", "items", "timestamps")

    def __init__(
        self,
        events: list[_Event],
        items: dict[_LineItem, tuple[str, bool]],
        timestamps: dict[str, tuple[datetime, str] | None],
    ) -> None:
        self.events = events
        self.items = items  # each distinct line item: its amount as ``decimal_text``, and whether that is its cost
        self.timestamps = timestamps  # each occurred_at sent: the instant, and its JSON form (``model_dump``'s)


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
    colon_first = 0  # string values that start with ':' (each also shows as '":')
    dimensions: set[str] = set()
    items: dict[_LineItem, tuple[str, bool]] = {}
    item_keys: dict[_LineItem, int] = {}
    timestamps: dict[str, tuple[datetime, str] | None] = {}
    for event in batch.events:
        keys += 1
        colon_first += event.id[0] == ":"
        occurred_at = event.occurred_at
        if occurred_at is not UNSET:
            keys += 1
            if occurred_at is not None:
                if occurred_at not in timestamps:
                    timestamps[occurred_at] = _timestamp(occurred_at)
                if timestamps[occurred_at] is None:
                    return None
        for dimension in (event.agent, event.app):
            if dimension is UNSET:
                continue
            keys += 1
            if dimension is None:
                continue
            if dimension not in dimensions:
                if not _DIMENSION(dimension):
                    return None
                dimensions.add(dimension)
            colon_first += dimension[0] == ":"
        if event.line_items is UNSET:
            continue
        keys += 1
        for item in event.line_items:
            count = item_keys.get(item)
            if count is None:
                checked = _checked_item(item)
                if checked is None:
                    return None
                items[item] = checked
                count = item_keys[item] = 2 + (item.quantity is not UNSET) + (item.cost is not UNSET)
            keys += count
    if raw.count(b'":') + len(_BLANKS_THEN_COLON.findall(raw)) - colon_first != keys:
        return None  # a key appears twice in some object
    return EventBatch(batch.events, items, timestamps)


def _checked_item(item: _LineItem) -> tuple[str, bool] | None:
    """The item's amount as ``decimal_text`` and whether it is the cost (else the quantity), or None."""
    quantity = None if item.quantity is UNSET else item.quantity
    cost = None if item.cost is UNSET else item.cost
    if (quantity is None) == (cost is None) or not _NAME(item.name):
        return None  # neither or both, or a name the pattern refuses
    amount = _amount_text(cost if quantity is None else quantity)
    return None if amount is None else (amount, quantity is None)


def _timestamp(text: str) -> tuple[datetime, str] | None:
    try:
        parsed = _TIMESTAMP.validate_python(text)
    except ValidationError:
        return None
    return parsed, _TIMESTAMP.dump_python(parsed, mode="json")


def _amount_text(value: int | str | None) -> str | None:
    """``decimal_text`` of the amount pydantic's ``Amount`` would read, or None outside the plain spellings."""
    if isinstance(value, int):
        return decimal_text(Decimal(value)) if 0 <= value < _AMOUNT_LIMIT else None
    return decimal_text(Decimal(value)) if value is not None and _PLAIN_DECIMAL(value) else None


def price_batch(batch: EventBatch, rate_card: Mapping[str, Decimal], now: datetime) -> list[PricedEvent] | None:
    """Each event priced (given costs, or quantity times the rate card's unit price) and digested, as the pydantic
    path prices them; None for an item the rate card has no price for (the pydantic path then answers
    ``unpriced_line_item``).

    The digest hashes the event's canonical JSON (keys sorted, compact), assembled from pieces: each distinct line
    item is encoded once a batch."""
    timestamps = batch.timestamps
    priced_items: dict[_LineItem, tuple[bytes, dict[str, str], Decimal]] = {}
    for item, (amount, is_cost) in batch.items.items():
        if is_cost:
            sent = {"cost": amount, "name": item.name, "type": item.type}  # sorted, as the digest wants
            priced = {"type": item.type, "name": item.name, "cost": amount}
            cost = Decimal(amount)
        else:
            unit = rate_card.get(f"{item.type}:{item.name}")
            if unit is None:
                return None
            cost = Decimal(amount) * unit
            sent = {"name": item.name, "quantity": amount, "type": item.type}
            priced = {"type": item.type, "name": item.name, "quantity": amount, "cost": decimal_text(cost)}
        priced_items[item] = (_JSON.encode(sent), priced, cost)
    encode, sha256 = _JSON.encode, hashlib.sha256
    priced_events: list[PricedEvent] = []
    for event in batch.events:
        agent = None if event.agent is UNSET else event.agent
        app = None if event.app is UNSET else event.app
        parts = [b"{"]
        if agent is not None:
            parts += (b'"agent":', encode(agent), b",")
        if app is not None:
            parts += (b'"app":', encode(app), b",")
        parts += (b'"id":', encode(event.id), b',"line_items":[')
        line_items: list[dict[str, str]] = []
        total = Decimal(0)
        if event.line_items is not UNSET:
            pieces = []
            for item in event.line_items:
                piece, priced, cost = priced_items[item]
                pieces.append(piece)
                line_items.append(priced)
                total += cost
            parts.append(b",".join(pieces))
        occurred_at = now
        if event.occurred_at is not UNSET and event.occurred_at is not None:
            stamp = timestamps[event.occurred_at]
            assert stamp is not None
            occurred_at = stamp[0]
            parts += (b'],"occurred_at":', encode(stamp[1]), b"}")
        else:
            parts.append(b"]}")
        digest = sha256(b"".join(parts)).hexdigest()
        priced_events.append(PricedEvent(event.id, occurred_at, agent, app, line_items, total, digest))
    return priced_events
