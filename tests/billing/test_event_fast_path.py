"""The events route's fast path (``billing/usage/events.py``) against the pydantic path it stands in for: on every
body it accepts it must store exactly what the pydantic path stores (line items, cost, request digest), and every
body outside its subset must be left to the pydantic path (None)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import func, select

from license_server.auth.tokens import Actor
from license_server.billing.accounts.snapshots import AccountSnapshot
from license_server.billing.schemas import EventsIn
from license_server.billing.usage import events
from license_server.billing.usage.models import UsageEvent
from license_server.billing.usage.service import PricedEvent, price_line_items, request_digest
from license_server.runtime import Runtime
from tests.billing.conftest import Platform, PlatformFactory, subscribe, tiny_plan

RATE_CARD = {"llm:gpt-4o": Decimal("0.00001"), "tool:search": Decimal("0.0020"), "storage:gb": Decimal("3")}
NOW = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


def _slow(raw: bytes) -> list[PricedEvent]:
    """The pydantic path, as the route's handler runs it."""
    snapshot = cast(AccountSnapshot, SimpleNamespace(rate_card_terms=SimpleNamespace(rate_card=RATE_CARD)))
    priced_events = []
    for event in EventsIn.model_validate(json.loads(raw)).events:
        body = event.model_dump(mode="json", exclude_none=True)
        priced, cost = price_line_items(snapshot, body.get("line_items", []))
        priced_events.append(
            PricedEvent(
                event_id=event.id,
                occurred_at=event.occurred_at or NOW,
                agent=event.agent,
                app=event.app,
                line_items=priced,
                cost=cost,
                digest=request_digest(**body),
            )
        )
    return priced_events


def _fast(raw: bytes) -> list[PricedEvent] | None:
    batch = events.decode_batch(raw)
    return None if batch is None else events.price_batch(batch, RATE_CARD, NOW)


def _random_event(rng: random.Random, n: int) -> dict[str, Any]:
    event: dict[str, Any] = {"id": f"ev-{n}:{rng.choice(['a', 'B', '~!'])}"}
    if rng.random() < 0.3:
        event["occurred_at"] = rng.choice(["2026-02-03", "2026-02-03T04:05:06Z", "2026-02-03T04:05:06.5+02:00"])
    for dimension in ("agent", "app"):
        if rng.random() < 0.6:
            event[dimension] = rng.choice(["agent-7", "support-bot", "x", None])
    if rng.random() < 0.9:
        items = []
        for _ in range(rng.randint(0, 3)):
            kind, name = rng.choice([("llm", "gpt-4o"), ("tool", "search"), ("storage", "gb")])
            amount = rng.choice([0, 7, 1200, "0", "1.50", "0.002", "12.0000000001", "00012", "99999999999999999999"])
            field = rng.choice(["quantity", "cost"])
            item: dict[str, Any] = {"type": kind, "name": name, field: amount}
            if rng.random() < 0.1:
                item["cost" if field == "quantity" else "quantity"] = None
            items.append(item)
        event["line_items"] = items
    return event


@pytest.mark.parametrize("seed", range(40))
def test_the_fast_path_stores_what_the_pydantic_path_stores(seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - reproducible test data
    body = {"events": [_random_event(rng, n) for n in range(rng.randint(1, 30))]}
    raw = json.dumps(body, separators=rng.choice([(",", ":"), (", ", ": ")])).encode()
    assert _fast(raw) == _slow(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"events":[{"id":"a","id":"b"}]}',  # a duplicated key: the app's body rules refuse it
        b'{"events":[{"id":"a","line_items":[{"type":"llm","name":"gpt-4o","cost":"1","cost":"2"}]}]}',
        b'{"events":[{"id":"a"}],"events":[{"id":"b"}]}',
        b'{"events":[{"id":"a", "agent" :"x","agent": "y"}]}',
        b'{"events":[{"id":"a\\n"}]}',  # any escape
        b'{"events":[{"id":"a","line_items":[{"type":"llm","name":"gpt-4o","cost":0.5}]}]}',  # a float
        b'{"events":[{"id":"a","line_items":[{"type":"llm","name":"gpt-4o","cost":"1e3"}]}]}',
        b'{"events":[{"id":"a","line_items":[{"type":"llm","name":"gpt-4o","cost":" 1"}]}]}',
        b'{"events":[{"id":"a","line_items":[{"type":"llm","name":"gpt-4o","cost":"0.00000000001"}]}]}',
        b'{"events":[{"id":"a","line_items":[{"type":"llm","name":"gpt-4o","cost":-1}]}]}',
        b'{"events":[{"id":"a","line_items":[{"type":"llm","name":"gpt-4o","cost":1,"quantity":1}]}]}',
        b'{"events":[{"id":"a","line_items":[{"type":"llm","name":"gpt-4o","cost":"1","quantity":"1"}]}]}',
        b'{"events":[{"id":"a","line_items":[{"type":"llm","name":"gpt-4o","cost":null,"quantity":null}]}]}',
        b'{"events":[{"id":":a",  "agent" : ":b" , "agent":":c"}]}',
        b'{"events":[{"id":"a","line_items":[{"type":"tool" ,"name":"search","cost":1,"cost" :1}]}]}',
        b'{"events":[{"id":"a","line_items":[{"type":"llm","name":"gpt-4o"}]}]}',
        b'{"events":[{"id":"a","line_items":[{"type":"llm","name":"unpriced","quantity":1}]}]}',
        b'{"events":[{"id":"a","line_items":[{"type":"llm","name":"-x","cost":1}]}]}',
        b'{"events":[{"id":"a","agent":"has space"}]}',
        b'{"events":[{"id":"a","occurred_at":"2026-02-03T04:05:06"}]}',  # no offset
        b'{"events":[{"id":"a","extra":1}]}',
        b'{"events":[]}',
        b'{"events":[' + b",".join(b'{"id":"e%d"}' % n for n in range(1001)) + b"]}",
        b'{"events":[{"id":""}]}',
        b'{"events":[{"id":":x"}],"x":[":y"]}',
        b"[" * 40 + b"]" * 40,
    ],
)
def test_anything_outside_the_subset_is_left_to_the_pydantic_path(raw: bytes) -> None:
    assert _fast(raw) is None


def test_a_string_that_starts_with_a_colon_is_not_counted_as_a_key() -> None:
    raw = b'{"events":[{"id":":x","agent":":y", "app" : ":z"}]}'
    assert _fast(raw) == _slow(raw)


def test_blanks_before_a_colon_still_count_each_key_once() -> None:
    raw = b'{"events" :[{"id"\t: "a", "agent"\n:"x", "line_items" : [{"type" : "tool", "name":"search", "cost" : 1}]}]}'
    fast = _fast(raw)
    assert fast is not None
    assert fast == _slow(raw)


# -- through the route: the fast path's batches and the pydantic path's answer alike --------------------------------
@pytest.fixture
async def platform(make_platform: PlatformFactory, runtime: Runtime, actor: Actor) -> Platform:
    made = await make_platform(catalogues=(tiny_plan("p", {}, rate_card={"llm:gpt-4o": "0.00001"}),))
    await subscribe(runtime, actor, made, "org-1", "p")
    return made


async def _post(client: httpx.AsyncClient, platform: Platform, content: bytes) -> httpx.Response:
    headers = {**platform.headers, "content-type": "application/json"}
    return await client.post(platform.url("org-1", "events"), headers=headers, content=content)


async def _stored(runtime: Runtime) -> int:
    async with runtime.session_factory() as db:
        return int(await db.scalar(select(func.count()).select_from(UsageEvent)) or 0)


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b'{"events":[{"id":"a","agent":"x","agent":"y"}]}', "agent"),
        (b'{"events":[{"id":"a","line_items":[{"type":"llm","name":"gpt-4o","cost":"1","cost" : "1"}]}]}', "cost"),
        (b'{"events":[{"id":"a"}],"events":[{"id":"b"}]}', "events"),
    ],
)
async def test_a_duplicated_key_is_refused_naming_it_and_nothing_is_written(
    client: httpx.AsyncClient, platform: Platform, runtime: Runtime, content: bytes, field: str
) -> None:
    response = await _post(client, platform, content)
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["field"] == field
    assert await _stored(runtime) == 0


async def test_a_body_nested_too_deep_is_refused_as_before(
    client: httpx.AsyncClient, platform: Platform, runtime: Runtime
) -> None:
    response = await _post(client, platform, b'{"events":[{"id":"a","x":' + b"[" * 100 + b"]" * 100 + b"}]}")
    assert (response.status_code, response.json()["errors"][0]["field"]) == (400, "body"), response.text
    assert await _stored(runtime) == 0


async def test_a_fast_batch_is_stored_as_the_pydantic_path_stores_it(
    client: httpx.AsyncClient, platform: Platform, runtime: Runtime
) -> None:
    """The same events, once plain (the fast path) and once with an escape (the pydantic path): same answer, and the
    replay of either by the other is a duplicate (same digest)."""
    plain = b'{"events":[{"id":"p-1","agent":"a","line_items":[{"type":"llm","name":"gpt-4o","quantity":1200}]}]}'
    escaped = plain.replace(b'"agent":"a"', b'"agent":"\\u0061"').replace(b"p-1", b"p-2")
    assert escaped != plain.replace(b"p-1", b"p-2")
    first, second = await _post(client, platform, plain), await _post(client, platform, escaped)
    assert first.json() == second.json() == {"data": {"accepted": 1, "duplicates": 0, "cost": "0.012"}}
    # p-1 again, through the pydantic path this time: the digests agree, so a duplicate, not a 409
    again = await _post(client, platform, plain.replace(b'"agent":"a"', b'"agent":"\\u0061"'))
    assert again.json()["data"] == {"accepted": 0, "duplicates": 1, "cost": "0"}
    async with runtime.session_factory() as db:
        rows = (await db.execute(select(UsageEvent).order_by(UsageEvent.event_id))).scalars().all()
    assert (rows[0].line_items, rows[0].cost) == (rows[1].line_items, rows[1].cost)
    assert rows[0].line_items == [{"type": "llm", "name": "gpt-4o", "quantity": "1200", "cost": "0.012"}]
