"""Helpers for tests that run the real ``license-server`` command and server as separate processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

BIN = Path(sys.executable).parent
LICENSE_SERVER = str(BIN / "license-server")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LICENSE_SERVER_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


@dataclass
class Cli:
    cwd: Path
    env: dict[str, str]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [LICENSE_SERVER, *args], cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=60
        )
        if check and result.returncode != 0:
            raise AssertionError(f"license-server {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """A fresh working directory, as a vendor engineer's checkout would be: data/ and keys/ created on init."""
    return Cli(cwd=tmp_path, env=clean_env())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[str]
    log: Path


def spawn_server(cli: Cli, port: int, *args: str, env: dict[str, str] | None = None) -> Server:
    """Start ``serve`` without waiting for it; its stdout and stderr go to a file (a pipe nobody reads would block a
    chatty server)."""
    log = cli.cwd / f"server-{port}-{time.monotonic_ns()}.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [LICENSE_SERVER, "serve", "--host", "127.0.0.1", "--port", str(port), *args],
            cwd=cli.cwd,
            env={**(env or cli.env), "PYTHONUNBUFFERED": "1"},  # tracebacks reach the log at once
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    return Server(url=f"http://127.0.0.1:{port}", process=process, log=log)


def wait_until_ready(server: Server, seconds: float = 30) -> Server:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"server exited early:\n{server.log.read_text()}")
        try:
            if httpx.get(f"{server.url}/health/ready", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.process.kill()
    raise AssertionError(f"server did not become ready in {seconds:.0f} s")


def start_server(cli: Cli, port: int, *args: str, env: dict[str, str] | None = None) -> Server:
    return wait_until_ready(spawn_server(cli, port, *args, env=env))


@pytest.fixture
def server(cli: Cli) -> Iterator[Server]:
    cli.run("init", "--dev")
    running = start_server(cli, free_port())
    try:
        yield running
    finally:
        running.process.terminate()
        running.process.wait(timeout=10)
