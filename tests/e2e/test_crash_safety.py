"""Killing the server in the middle of an activation load loses no acknowledged activation."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import threading

import httpx
import pytest

from tests.e2e.conftest import Cli, free_port, start_server

pytestmark = pytest.mark.slow


def test_sigkill_during_activation_load_loses_no_acknowledged_activation(cli: Cli) -> None:
    cli.run("init", "--dev")
    customer = cli.json("customers", "create", "--name", "Load Corp")
    key = cli.json(
        "licenses", "issue", "--customer", customer["id"], "--expires", "2035-01-01", "--max-activations", "0"
    )["key"]
    port = free_port()
    acknowledged: set[str] = set()
    lock = threading.Lock()

    async def load(url: str, stop: asyncio.Event, offset: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            index = 0
            while not stop.is_set():
                index += 1
                try:
                    response = await client.post(
                        "/v1/activations", json={"license_key": key, "fingerprint": f"node-{offset}-{index}"}
                    )
                except httpx.HTTPError:
                    await asyncio.sleep(0.01)
                    continue
                if response.status_code == 201:
                    with lock:
                        acknowledged.add(response.json()["activation_id"])

    async def run_and_kill(rounds: int) -> None:
        for _ in range(rounds):
            server = start_server(cli, port)
            stop = asyncio.Event()
            workers = [asyncio.create_task(load(server.url, stop, i + 1000 * len(acknowledged))) for i in range(8)]
            await asyncio.sleep(1.5)
            os.kill(server.process.pid, signal.SIGKILL)  # mid-load, no shutdown hooks
            server.process.wait(timeout=10)
            stop.set()
            await asyncio.gather(*workers)

    asyncio.run(run_and_kill(3))
    print(f"\n{len(acknowledged)} acknowledged activations across 3 SIGKILLs")
    assert len(acknowledged) > 50, "the load did not get going"
    database = cli.cwd / "data" / "license-server.db"
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = {row[0] for row in connection.execute("SELECT id FROM activations")}
        events = connection.execute("SELECT count(*) FROM events WHERE type = 'activation.created'").fetchone()[0]
    stored_ids = {s.replace("-", "") for s in stored}
    missing = {a for a in acknowledged if a.replace("-", "") not in stored_ids}
    assert missing == set(), f"{len(missing)} acknowledged activations lost"
    assert events == len(stored)  # every stored activation has its event: nothing half-written
