"""A license server set up like the real thing, and uvicorn subprocesses serving it or a bare baseline app.

Setup goes through the CLI (``init --dev``, ``customers create``, ``licenses issue``) in a temporary directory;
activations go through the HTTP API. Both apps are served by the same uvicorn command line, one worker each.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.common import REPO_ROOT, VENV_BIN, free_port

# The unauthenticated routes are rate-limited per address and per key (60 and 20 a minute by default); a load test
# from one address would measure the limiter, so the benchmark's servers raise both.
BENCH_RATE_LIMIT = 1_000_000_000
UVICORN_FLAGS = ("--no-access-log", "--log-level", "warning", "--no-server-header", "--workers", "1")
RATE_LIMIT_NOTE = (
    f"rate limits raised for the benchmark: LICENSE_SERVER_RATE_LIMIT_PER_ADDRESS and "
    f"LICENSE_SERVER_RATE_LIMIT_PER_LICENSE_KEY = {BENCH_RATE_LIMIT:,} (defaults 60/min and 20/min)."
)


POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


def bench_env(directory: Path, database_url: str | None = None) -> dict[str, str]:
    env = {
        **os.environ,
        "LICENSE_SERVER_DATA_DIR": str(directory / "data"),
        "LICENSE_SERVER_KEYS_DIR": str(directory / "keys"),
        "LICENSE_SERVER_RATE_LIMIT_PER_ADDRESS": str(BENCH_RATE_LIMIT),
        "LICENSE_SERVER_RATE_LIMIT_PER_LICENSE_KEY": str(BENCH_RATE_LIMIT),
    }
    if database_url:
        env["LICENSE_SERVER_DATABASE_URL"] = database_url
    return env


def _postgres_admin(*statements: str) -> None:
    import asyncpg

    async def run() -> None:
        connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
        try:
            for statement in statements:
                await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


def postgres_unavailable() -> str | None:
    """Why the benchmarks cannot use the PostgreSQL server at 127.0.0.1:5432, or None when they can."""
    try:
        _postgres_admin("SELECT 1")
    except Exception as exc:
        return f"PostgreSQL at 127.0.0.1:5432 unreachable ({type(exc).__name__}: {exc})"
    return None


@contextmanager
def postgres_database(prefix: str = "bench") -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one benchmark (an asyncpg URL), dropped afterwards."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    _postgres_admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        _postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cli(env: dict[str, str], *args: str) -> Any:
    """Run ``license-server ARGS --json`` and return its JSON answer."""
    completed = subprocess.run(
        [str(VENV_BIN / "license-server"), *args, "--json"], env=env, capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"license-server {' '.join(args)} failed: {completed.stdout}{completed.stderr}")
    return json.loads(completed.stdout)


@dataclass
class LicenseServerData:
    """A data directory initialised by the CLI with one customer and some unlimited licenses."""

    directory: Path
    env: dict[str, str]
    customer_id: str = ""
    license_keys: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, directory: Path, licenses: int, *, database_url: str | None = None) -> LicenseServerData:
        """``database_url``: a PostgreSQL database to use instead of SQLite in the data directory."""
        data = cls(directory, bench_env(directory, database_url))
        cli(data.env, "init", "--dev")
        data.customer_id = str(cli(data.env, "customers", "create", "--name", "Bench Customer")["id"])
        for _ in range(licenses):
            issued = cli(
                data.env,
                "licenses",
                "issue",
                "--customer",
                data.customer_id,
                "--expires",
                "2030-01-01",
                "--max-activations",
                "0",
            )
            data.license_keys.append(str(issued["key"]))
        return data


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid


def uvicorn_command(factory: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        factory,
        "--app-dir",
        str(REPO_ROOT),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *UVICORN_FLAGS,
    ]


def _wait_until_up(server: Server, path: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited: {server.log.read_text()[-3000:]}")
        try:
            httpx.get(server.base_url + path, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{server.name} did not start within {timeout}s: {server.log.read_text()[-3000:]}")


@contextmanager
def uvicorn_server(name: str, factory: str, env: dict[str, str], log_dir: Path, ready_path: str) -> Iterator[Server]:
    port = free_port()
    log = log_dir / f"{name}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            uvicorn_command(factory, port), env=env, cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT
        )
    server = Server(name, port, process, log)
    try:
        _wait_until_up(server, ready_path)
        yield server
    finally:
        process.terminate()  # uvicorn shuts down gracefully on SIGTERM (the product flushes check-ins)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def product_server(data: LicenseServerData) -> AbstractContextManager[Server]:
    return uvicorn_server("license-server", "bench.apps:product_app", data.env, data.directory, "/health/live")


def bare_server(env: dict[str, str], log_dir: Path) -> AbstractContextManager[Server]:
    return uvicorn_server("bare-litestar", "bench.apps:bare_app", env, log_dir, "/bare")


@dataclass(frozen=True)
class Activated:
    token: str
    etag: str


def activate(client: httpx.Client, license_key: str, fingerprint: str) -> Activated:
    response = client.post("/v1/activations", json={"license_key": license_key, "fingerprint": fingerprint})
    if response.status_code not in (200, 201):
        raise RuntimeError(f"activation failed: {response.status_code} {response.text}")
    return Activated(str(response.json()["deployment_token"]), response.headers["ETag"])
