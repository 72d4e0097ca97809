"""On PostgreSQL a subscription's lifecycle change reaches every replica's cached account snapshot at its commit
(NOTIFY in the transaction), the scheduler's transitions included, and a change that rolls back reaches none."""

from __future__ import annotations

import asyncio

import pytest

from license_server.replicas.invalidation import InvalidationBus, InvalidationListener, Topic
from tests.billing.subscriptions.conftest import Clocked


@pytest.fixture
def backend() -> str:
    return "postgres"


@pytest.mark.postgres
async def test_a_plan_change_reaches_another_replica_at_commit_and_a_refused_one_never(clocked: Clocked) -> None:
    other_replica = InvalidationBus()
    heard: list[str | None] = []
    other_replica.subscribe(Topic.BILLING_ACCOUNT, heard.append)
    listener = InvalidationListener(clocked.runtime.settings.resolved_database_url, other_replica)
    listener.start()
    try:
        await asyncio.wait_for(listener.connected.wait(), timeout=10)
        sid = (await clocked.subscribe("starter"))["id"]
        account = f"{clocked.platform.id}:org-1"
        for _ in range(100):
            if account in heard:
                break
            await asyncio.sleep(0.05)
        assert account in heard  # the subscription's creation went through the lifecycle
        heard.clear()

        await clocked.act(sid, "change-plan", {"plan": "pro"})
        for _ in range(100):
            if heard:
                break
            await asyncio.sleep(0.05)
        assert heard == [account]
        heard.clear()

        refused = await clocked.client.post(
            clocked.subscription_url(sid, "actions/change-plan"), json={"plan": "no-such-plan"}, headers=clocked.admin
        )
        assert refused.status_code == 404, refused.text
        await asyncio.sleep(0.5)
        assert heard == []  # rolled back: nothing to forget anywhere
    finally:
        await listener.stop()
