"""`serve` runs the scheduled jobs in-process; `serve --no-scheduler` leaves them to `license-server scheduler`."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.e2e.conftest import LICENSE_SERVER, Cli, free_port, start_server

pytestmark = pytest.mark.slow


def sweep_holders(database: Path) -> list[str]:
    with sqlite3.connect(database) as connection:
        return [row[0] for row in connection.execute("SELECT holder FROM job_leases WHERE name = 'lifecycle.sweep'")]


def wait_for(condition: object, seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.2)
    return False


def test_serve_runs_the_sweep_unless_told_not_to_and_the_scheduler_runs_it_alone(cli: Cli) -> None:
    cli.run("init", "--dev")
    cli.env["LICENSE_SERVER_SWEEP_INTERVAL_SECONDS"] = "0.5"
    database = cli.cwd / "data" / "license-server.db"

    server = start_server(cli, free_port())
    try:
        assert wait_for(lambda: bool(sweep_holders(database))), "serve did not run the sweep"
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)

    with sqlite3.connect(database) as connection:
        connection.execute("DELETE FROM job_leases")
    quiet = subprocess.Popen(
        [LICENSE_SERVER, "serve", "--no-scheduler", "--port", str(free_port())],
        cwd=cli.cwd,
        env=cli.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    scheduler = None
    try:
        time.sleep(3)
        assert sweep_holders(database) == [], "serve --no-scheduler ran the sweep"
        scheduler = subprocess.Popen(
            [LICENSE_SERVER, "scheduler"],
            cwd=cli.cwd,
            env=cli.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert wait_for(lambda: bool(sweep_holders(database))), "license-server scheduler did not run the sweep"
        assert f":{scheduler.pid}:" in sweep_holders(database)[0]
    finally:
        for process in (quiet, scheduler):
            if process is not None:
                process.terminate()
                process.wait(timeout=10)


def sweep_lease(database: Path) -> tuple[str, str] | None:
    with sqlite3.connect(database) as connection:
        row = connection.execute("SELECT holder, expires_at FROM job_leases WHERE name = 'lifecycle.sweep'").fetchone()
    return (str(row[0]), str(row[1])) if row else None


def test_a_process_stopped_with_sigterm_hands_the_sweep_lease_to_its_successor_at_once(cli: Cli) -> None:
    """With a 1 h interval the lease lasts 2 h: a stopped holder that kept it left its restarted successor (serve,
    then the scheduler alone, then serve again) sweeping nothing for 2 h. Each successor must take it at once."""
    cli.run("init", "--dev")
    cli.env["LICENSE_SERVER_SWEEP_INTERVAL_SECONDS"] = "3600"
    database = cli.cwd / "data" / "license-server.db"
    holders: list[str] = []

    def run_until_it_holds_the_lease(process: subprocess.Popen[str], name: str) -> None:
        try:
            held = wait_for(lambda: (lease := sweep_lease(database)) is not None and f":{process.pid}:" in lease[0])
            assert held, f"{name} (pid {process.pid}) did not take the sweep lease; it is {sweep_lease(database)}"
            lease = sweep_lease(database)
            assert lease is not None
            holders.append(lease[0])
        finally:
            process.terminate()  # SIGTERM, as a container stop sends
            # uvicorn re-raises the signal once its graceful shutdown is done: -SIGTERM is a clean exit too.
            assert process.wait(timeout=15) in {0, -signal.SIGTERM}, f"{name} did not stop on SIGTERM"

    run_until_it_holds_the_lease(start_server(cli, free_port()).process, "serve")
    run_until_it_holds_the_lease(
        subprocess.Popen(
            [LICENSE_SERVER, "scheduler"],
            cwd=cli.cwd,
            env=cli.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        ),
        "license-server scheduler",
    )
    run_until_it_holds_the_lease(start_server(cli, free_port()).process, "serve, restarted")
    assert len(set(holders)) == 3  # unique per process start
    lease = sweep_lease(database)
    assert lease is not None
    expires_at = datetime.fromisoformat(lease[1])
    assert expires_at.replace(tzinfo=expires_at.tzinfo or UTC) <= datetime.now(UTC)  # released on the way out
