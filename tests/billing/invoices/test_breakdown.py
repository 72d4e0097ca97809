"""The usage breakdown of a period over the platform and admin APIs, on SQLite and PostgreSQL: cost by day, agent,
app and line item (seed 002's llm / tool / storage), summed exactly, and only the period asked for."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from license_server.auth.tokens import Actor
from license_server.runtime import Runtime
from tests.billing.conftest import PlatformFactory, subscribe, tiny_plan
from tests.conftest import MovableClock

pytestmark = pytest.mark.usefixtures("backend")

ANCHOR = datetime(2026, 3, 10, tzinfo=UTC)


async def test_breakdown_by_day_agent_app_and_line_item(
    client: httpx.AsyncClient,
    make_platform: PlatformFactory,
    runtime: Runtime,
    actor: Actor,
    clock: MovableClock,
    owner_headers: dict[str, str],
) -> None:
    clock.now = ANCHOR
    platform = await make_platform(catalogues=(tiny_plan("pro", {}, price="10"),))
    await subscribe(runtime, actor, platform, "ws-1", "pro", anchor=ANCHOR)
    events = [
        {
            "id": "r1",
            "occurred_at": "2026-03-11T10:00:00Z",
            "agent": "support",
            "app": "chat",
            "line_items": [
                {"type": "llm", "name": "gpt-4o", "cost": "0.1"},
                {"type": "tool", "name": "search", "cost": "0.2"},
            ],
        },
        {
            "id": "r2",
            "occurred_at": "2026-03-11T23:59:59Z",
            "agent": "support",
            "line_items": [{"type": "llm", "name": "gpt-4o", "cost": "0.0000000001"}],
        },
        {
            "id": "r3",
            "occurred_at": "2026-03-12T00:00:00Z",
            "agent": "sales",
            "app": "chat",
            "line_items": [{"type": "storage", "name": "vector_mb", "cost": "3"}],
        },
        {
            "id": "r4",
            "occurred_at": "2026-04-10T00:00:00Z",
            "agent": "sales",  # the next period
            "line_items": [{"type": "llm", "name": "gpt-4o", "cost": "100"}],
        },
    ]
    sent = await client.post(platform.url("ws-1", "events"), headers=platform.headers, json={"events": events})
    assert sent.status_code == 201, sent.text

    clock.now = datetime(2026, 3, 20, tzinfo=UTC)
    response = await client.get(platform.url("ws-1", "usage/breakdown"), headers=platform.headers)
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {
        "period_start": "2026-03-10T00:00:00+00:00",
        "period_end": "2026-04-10T00:00:00+00:00",
        "events": 3,
        "total": "3.3000000001",
        "by_day": {"2026-03-11": "0.3000000001", "2026-03-12": "3"},
        "by_agent": {"sales": "3", "support": "0.3000000001"},
        "by_app": {"(none)": "0.0000000001", "chat": "3.3"},
        "by_line_item": {"llm": "0.1000000001", "storage": "3", "tool": "0.2"},
        "by_line_item_name": {"llm:gpt-4o": "0.1000000001", "storage:vector_mb": "3", "tool:search": "0.2"},
    }
    later = await client.get(
        f"/v1/admin/billing/platforms/{platform.id}/accounts/ws-1/usage/breakdown",
        params={"at": "2026-04-15T00:00:00Z"},
        headers=owner_headers,
    )
    assert later.status_code == 200, later.text
    assert (later.json()["events"], later.json()["by_agent"]) == (1, {"sales": "100"})
    naive = await client.get(
        platform.url("ws-1", "usage/breakdown"), params={"at": "2026-04-15T00:00:00"}, headers=platform.headers
    )
    assert (naive.status_code, naive.json()["errors"][0]["field"]) == (400, "at")
