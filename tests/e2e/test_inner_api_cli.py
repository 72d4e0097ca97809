"""`licenses credentials` as an operator uses it: the secret from the CLI is what a Dify deployment sends."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import Cli, Server, free_port, start_server

pytestmark = pytest.mark.slow
CACHE_SECONDS = 0.5


@pytest.fixture
def server(cli: Cli) -> Iterator[Server]:
    """A served directory whose caches live CACHE_SECONDS, so the revocation is seen quickly."""
    cli.run("init", "--dev")
    cli.env["LICENSE_SERVER_POLL_CACHE_SECONDS"] = str(CACHE_SECONDS)
    running = start_server(cli, free_port())
    try:
        yield running
    finally:
        running.process.terminate()
        running.process.wait(timeout=10)


def test_a_cli_credential_opens_the_inner_api_until_revoked(cli: Cli, server: Server) -> None:
    customer = cli.json("customers", "create", "--name", "Dify Operator")
    issued = cli.json("licenses", "issue", "--customer", customer["id"], "--expires", "2030-01-01", "--workspaces", "4")
    created = cli.json("licenses", "credentials", "create", issued["id"], "--label", "dify-prod")
    secret = created["secret"]
    assert secret.startswith("lsia_")
    assert secret.encode() not in (cli.cwd / "data" / "license-server.db").read_bytes()  # only its keyed hash

    listed = cli.json("licenses", "credentials", "list", issued["id"])["items"]
    assert [c["id"] for c in listed] == [created["id"]]
    assert "secret" not in listed[0]
    assert listed[0]["hint"] == secret[-4:]

    headers = {"Enterprise-Api-Secret-Key": secret}
    info = httpx.get(f"{server.url}/inner/api/info", headers=headers, timeout=10)
    assert info.status_code == 200
    assert info.json()["License"]["status"] == "active"
    assert info.json()["License"]["workspaces"] == {"enabled": True, "limit": 4, "used": 0}

    revoked = cli.json("licenses", "credentials", "revoke", issued["id"], created["id"])
    assert revoked["revoked_at"]
    # The server process caches credentials for at most poll_cache_seconds (here CACHE_SECONDS).
    deadline = time.monotonic() + CACHE_SECONDS + 2
    answer = httpx.get(f"{server.url}/inner/api/info", headers=headers, timeout=10)
    while answer.status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.2)
        answer = httpx.get(f"{server.url}/inner/api/info", headers=headers, timeout=10)
    assert answer.status_code == 401, "a revoked secret still worked after the cache lifetime"
    assert answer.json()["message"]


def test_a_label_longer_than_a_credential_keeps_is_refused_by_the_cli_and_nothing_is_stored(cli: Cli) -> None:
    """The admin API's schema bounded labels (200) but the CLI passed any label on: SQLite stored it whole and
    PostgreSQL refused it with a database error. The one inner-API service now refuses it for every caller."""
    cli.run("init", "--dev")
    customer = cli.json("customers", "create", "--name", "Dify Operator")
    issued = cli.json("licenses", "issue", "--customer", customer["id"], "--expires", "2030-01-01")
    refused = cli.run("licenses", "credentials", "create", issued["id"], "--label", "x" * 201, "--json", check=False)
    assert refused.returncode == 1, refused.stdout
    assert json.loads(refused.stdout)["error"] == "validation_error"
    assert "label" in json.loads(refused.stdout)["detail"]
    assert cli.json("licenses", "credentials", "list", issued["id"])["items"] == []
    assert cli.json("licenses", "credentials", "create", issued["id"], "--label", "x" * 200)["label"] == "x" * 200
