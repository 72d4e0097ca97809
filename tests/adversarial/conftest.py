"""Shared pieces of the adversarial suite: bounded budgets for ``make test``, long ones for ``make soak``.

``SOAK=1`` (set by ``make soak``) turns every budget here up: more fuzzing examples, more kills, more guesses.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Cli, Server, clean_env, cli, free_port, start_server

__all__ = ["cli"]  # the e2e fixture, for the tests here that run the real command

SOAK = os.environ.get("SOAK") == "1"


def budget(bounded: int, soak: int) -> int:
    """How much of something to do: ``bounded`` in ``make test``, ``soak`` in ``make soak``."""
    return soak if SOAK else bounded


@dataclass
class Seeded:
    """A running server with one of each resource, so fuzzed path parameters can hit real rows."""

    server: Server
    cli: Cli
    owner_token: str
    customer_id: str
    plan_id: str
    plan_code: str
    license_id: str
    license_key: str
    activation_id: str
    deployment_token: str
    inner_api_secret: str
    # Hosted billing: a platform (its secret authenticates /v1/billing) with one account on a plan with quotas.
    platform_id: str = ""
    platform_secret: str = ""
    billing_external_id: str = "fuzz-org"


def seed(server: Server, cli: Cli, owner_token: str) -> Seeded:
    admin = {"Authorization": f"Bearer {owner_token}"}
    with httpx.Client(base_url=server.url, headers=admin, timeout=10) as http:
        customer = http.post("/v1/admin/customers/", json={"name": "Fuzz Corp"}).json()
        plan = http.post("/v1/admin/plans/", json={"code": "fuzz", "name": "Fuzz", "terms": {}}).json()
        issued = http.post(
            "/v1/admin/licenses/",
            json={"customer_id": customer["id"], "plan": plan["code"], "expires_at": "2035-01-01"},
        )
        assert issued.status_code == 201, issued.text
        license_ = issued.json()
        activation = http.post(
            "/v1/activations", json={"license_key": license_["key"], "fingerprint": "fuzz-host"}, headers={}
        ).json()
        credential = http.post(f"/v1/admin/licenses/{license_['id']}/inner-api/credentials", json={"label": "fuzz"})
        assert credential.status_code == 201, credential.text
        quotas = {
            "app.max_total_count": {"kind": "total", "limit": 1000},
            "app_invocation.max_monthly_count": {"kind": "monthly", "limit": 100000},
        }
        catalogue = {"plans": [{"code": "fuzz-hosted", "name": "Fuzz hosted", "billing": {"quotas": quotas}}]}
        assert http.post("/v1/admin/billing/plans/import", json=catalogue).status_code == 201
        platform = http.post("/v1/admin/billing/platforms", json={"name": "Fuzz Cloud", "default_plan": "fuzz-hosted"})
        assert platform.status_code == 201, platform.text
    return Seeded(
        server=server,
        cli=cli,
        owner_token=owner_token,
        customer_id=customer["id"],
        plan_id=plan["id"],
        plan_code=plan["code"],
        license_id=license_["id"],
        license_key=license_["key"],
        activation_id=activation["activation_id"],
        deployment_token=activation["deployment_token"],
        inner_api_secret=credential.json()["secret"],
        platform_id=platform.json()["id"],
        platform_secret=platform.json()["secret"],
    )


@pytest.fixture(scope="session")
def seeded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """One real ``serve`` process for the session's fuzzing, at DEBUG, limits raised so fuzzing goes deep."""
    cli = Cli(
        cwd=tmp_path_factory.mktemp("fuzz"),
        env=clean_env(
            LICENSE_SERVER_LOG_LEVEL="DEBUG",
            LICENSE_SERVER_RATE_LIMIT_PER_ADDRESS="1000000",
            LICENSE_SERVER_RATE_LIMIT_PER_LICENSE_KEY="1000000",
            LICENSE_SERVER_RATE_LIMIT_FAILED_AUTH_PER_ADDRESS="1000000",
        ),
    )
    owner_token = cli.json("init", "--dev")["admin_token"]
    # No scheduler: fuzzed webhook endpoints must not be delivered to.
    server = start_server(cli, free_port(), "--no-scheduler")
    try:
        yield seed(server, cli, owner_token)
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)


def log_of(server: Server) -> str:
    return Path(server.log).read_text(errors="replace")
