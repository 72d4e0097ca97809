"""SIGKILL the server under usage load, several times: no acknowledged consumption is lost, and a consumption
retried after the crash (same idempotency key, whether or not the first attempt was answered) is counted once.

The counter must equal the sum of the stored consumptions exactly, and every acknowledged key must answer its first
history_id when retried on the restarted server.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.adversarial.conftest import budget
from tests.e2e.conftest import Cli, free_port, start_server
from tests.e2e.test_crash_safety import private_postgres, rows

pytestmark = pytest.mark.slow
KEY = "app_invocation.max_monthly_count"
__all__ = ["private_postgres"]


@dataclass
class UsageLoad:
    secret: str
    url: str = ""
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    acked: dict[str, tuple[int, str]] = field(default_factory=dict)  # idempotency key -> (amount, history_id)
    sent: dict[str, int] = field(default_factory=dict)  # every key sent, answered or not -> amount

    async def _worker(self) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as http:
            while not self.stop.is_set():
                key, amount = f"c-{uuid.uuid4().hex[:12]}", random.randint(1, 5)  # noqa: S311 - load shape
                self.sent[key] = amount
                try:
                    response = await consume(http, self.secret, key, amount)
                except httpx.HTTPError:
                    await asyncio.sleep(0.02)
                    continue
                if response.status_code == 201:
                    self.acked[key] = (amount, response.json()["data"]["history_id"])

    def workers(self) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self._worker()) for _ in range(8)]


async def consume(http: httpx.AsyncClient, secret: str, key: str, amount: int) -> httpx.Response:
    return await http.post(
        "/v1/billing/accounts/org-1/usage/consume",
        headers={"Authorization": f"Bearer {secret}"},
        json={"key": KEY, "amount": amount, "idempotency_key": key},
    )


def prepare(cli: Cli) -> str:
    cli.run("init", "--dev")
    catalogue = {
        "plans": [{"code": "big", "name": "Big", "billing": {"quotas": {KEY: {"kind": "monthly", "limit": 10**12}}}}]
    }
    path = Path(cli.cwd) / "catalogue.json"
    path.write_text(json.dumps(catalogue))
    cli.run("billing", "plans", "import", str(path))
    platform = cli.json("billing", "platforms", "create", "--name", "Crash Cloud", "--default-plan", "big", "--json")
    return str(platform["secret"])


async def run_and_kill(cli: Cli, load: UsageLoad, rounds: int, env: dict[str, str]) -> None:
    for _ in range(rounds):
        server = start_server(cli, free_port(), env=env)
        load.url, load.stop = server.url, asyncio.Event()
        workers = load.workers()
        started_with, deadline = len(load.acked), time.monotonic() + 15
        while len(load.acked) < started_with + 20 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await asyncio.sleep(random.uniform(0.0, 0.5))  # noqa: S311 - a random kill point
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)
        load.stop.set()
        await asyncio.gather(*workers)


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_sigkill_under_usage_load_loses_nothing_acknowledged_and_counts_retries_once(
    cli: Cli, database: str, request: pytest.FixtureRequest
) -> None:
    env = dict(cli.env)
    if database == "postgres":
        cluster = request.getfixturevalue("private_postgres")
        name = f"billing_crash_{uuid.uuid4().hex[:8]}"
        cluster.create_database(name)
        env["LICENSE_SERVER_DATABASE_URL"] = database_url = cluster.url(name)
    else:
        database_url = f"sqlite+aiosqlite:///{cli.cwd / 'data' / 'license-server.db'}"
    cli.env = env
    load = UsageLoad(secret=prepare(cli))
    asyncio.run(run_and_kill(cli, load, budget(3, 10), env))
    assert len(load.acked) >= 20, "the load did not get going"

    # Retry everything that was sent, answered or not, on a restarted server.
    server = start_server(cli, free_port(), env=env)

    async def retry_all() -> dict[str, str]:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            answers = {}
            for key, amount in load.sent.items():
                response = await consume(http, load.secret, key, amount)
                assert response.status_code == 201, response.text
                answers[key] = response.json()["data"]["history_id"]
            return answers

    try:
        answers = asyncio.run(retry_all())
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)
    for key, (_, history_id) in load.acked.items():
        assert answers[key] == history_id, "a retry of an acknowledged consumption did not answer its first result"

    records = asyncio.run(rows(database_url, "SELECT idempotency_key, amount FROM billing_usage_records"))
    used = asyncio.run(rows(database_url, "SELECT sum(used), sum(held) FROM billing_usage_counters"))[0]
    assert {key for key, _ in records} == set(load.sent), "every sent consumption is stored once after its retry"
    assert len(records) == len(load.sent)
    assert int(used[0]) == sum(int(amount) for _, amount in records) == sum(load.sent.values())
    assert int(used[1]) == 0
    print(f"\n{database}: {len(load.acked)} acknowledged, {len(load.sent)} sent, counter {used[0]}")
