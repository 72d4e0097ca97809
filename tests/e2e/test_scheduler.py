"""`serve` runs the scheduled jobs in-process; `serve --no-scheduler` leaves them to `license-server scheduler`."""

from __future__ import annotations

import sqlite3
import subprocess
import time
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
        assert sweep_holders(database)[0].endswith(f":{scheduler.pid}")
    finally:
        for process in (quiet, scheduler):
            if process is not None:
                process.terminate()
                process.wait(timeout=10)
