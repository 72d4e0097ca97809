"""Against the real ``serve``: a client cannot choose the address its failures count against by sending
X-Forwarded-For (uvicorn believed the header from any loopback peer), and failures of one credential kind leave the
others alone."""

from __future__ import annotations

import secrets

import httpx
import pytest

from tests.e2e.conftest import Cli, Server

pytestmark = pytest.mark.slow
FAILED_AUTH_LIMIT = 30  # the default LICENSE_SERVER_RATE_LIMIT_FAILED_AUTH_PER_ADDRESS
ADDRESS_LIMIT = 60  # the default LICENSE_SERVER_RATE_LIMIT_PER_ADDRESS


def test_a_spoofed_forwarded_for_does_not_escape_the_limiters(cli: Cli, server: Server) -> None:
    """80 bad tokens with a different X-Forwarded-For each, from loopback, were never refused."""
    owner_token = cli.json("tokens", "create", "--role", "owner", "--name", "e2e")["token"]
    with httpx.Client(base_url=server.url, timeout=10) as http:
        statuses = [
            http.get(
                "/v1/license",
                headers={
                    "Authorization": f"Bearer lsdt_{secrets.token_urlsafe(32)}",
                    "X-Forwarded-For": f"192.0.2.{i}",
                },
            ).status_code
            for i in range(80)
        ]
        assert statuses.index(429) == FAILED_AUTH_LIMIT
        # The owner's admin token, from the same address, is another kind of credential: not locked out.
        admin = http.get("/v1/admin/licenses", headers={"Authorization": f"Bearer {owner_token}"})
        assert admin.status_code == 200
        guesses = [
            http.post(
                "/v1/activations",
                json={"license_key": "LSK-" + secrets.token_hex(8), "fingerprint": "f"},
                headers={"X-Forwarded-For": f"192.0.2.{i}"},
            ).status_code
            for i in range(ADDRESS_LIMIT + 10)
        ]
        assert 429 in guesses
        assert guesses.index(429) <= ADDRESS_LIMIT
