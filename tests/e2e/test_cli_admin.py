"""The commands for what used to exist only over HTTP: they call the admin API's services and change what it would."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from click.testing import CliRunner

from license_server.auth.tokens import cli_actor
from license_server.cli.main import cli
from license_server.config import Settings
from license_server.deployments import service as deployments
from license_server.events import webhooks
from license_server.runtime import Runtime
from tests.billing.credits.test_cli import cli_env  # noqa: F401 - the fixture, shared
from tests.conftest import _truncate_all

pytestmark = pytest.mark.usefixtures("backend")


def _json(*args: str) -> Any:
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _text(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def _deployment_and_webhook(settings: Settings, license_key: str) -> tuple[str, str]:
    """A live activation of the license and a webhook endpoint with the deliveries of its events, as the server
    and the scheduler would have made them."""

    async def make() -> tuple[str, str]:
        runtime = Runtime.build(settings)
        try:
            async with runtime.session_factory() as session:
                endpoint = await webhooks.create_endpoint(
                    session,
                    actor=cli_actor(),
                    url="https://hooks.example.com/licenses",
                    event_types=[],
                    secret_box=runtime.webhook_secret_box,
                    allowed_networks=runtime.settings.webhook_allowed_networks,
                    clock=runtime.clock,
                )
            async with runtime.session_factory() as session:
                activated = await deployments.activate(
                    session, runtime=runtime, license_key=license_key, fingerprint="fp-1", clock=runtime.clock
                )
            async with runtime.session_factory() as session:
                assert await webhooks.fan_out(session, clock=runtime.clock) >= 1
            return str(activated.activation.id), str(endpoint.endpoint.id)
        finally:
            await runtime.close()

    return asyncio.run(make())


def _empty(settings: Settings) -> None:
    async def truncate() -> None:
        runtime = Runtime.build(settings)
        try:
            await _truncate_all(runtime)
        finally:
            await runtime.close()

    if not settings.is_sqlite:  # the session's PostgreSQL database holds other tests' rows
        asyncio.run(truncate())


def test_customers_plans_activations_webhooks_events_and_audit_from_the_cli(cli_env: Settings) -> None:  # noqa: F811
    _empty(cli_env)
    customer = _json("customers", "create", "--name", "Acme", "--external-id", "crm-9")
    assert _json("customers", "show", customer["id"]) == customer

    _json("plans", "create", "--code", "team", "--name", "Team", "--max-activations", "3")
    issued = _json("licenses", "issue", "--customer", customer["id"], "--expires", "2030-01-01", "--plan", "team")
    updated = _json("plans", "update", "team", "--name", "Team 2", "--max-activations", "5")
    assert (updated["name"], updated["terms"]["max_activations"]) == ("Team 2", 5)
    assert _json("plans", "show", updated["id"]) == updated  # by id as by code
    assert _json("licenses", "show", issued["id"])["effective_terms"]["max_activations"] == 5  # licenses follow

    activation_id, endpoint_id = _deployment_and_webhook(cli_env, issued["key"])
    live = _json("activations", "list", "--license", issued["id"], "--state", "live")["items"]
    assert [a["id"] for a in live] == [activation_id]
    assert _text("activations", "list", "--state", "lost") == "No activations.\n"
    assert _json("activations", "deactivate", activation_id)["deactivated_at"] is not None
    assert _json("activations", "list", "--state", "deactivated")["total"] == 1

    endpoints = _json("webhooks", "list")["items"]
    assert [e["id"] for e in endpoints] == [endpoint_id]
    assert "secret" not in endpoints[0]
    assert _json("webhooks", "show", endpoint_id)["url"] == "https://hooks.example.com/licenses"
    deliveries = _json("webhooks", "deliveries", "--endpoint", endpoint_id)["items"]
    assert deliveries
    assert {d["state"] for d in deliveries} == {"pending"}
    again = _json("webhooks", "redeliver", deliveries[0]["id"])
    assert (again["id"], again["state"], again["attempts"]) == (deliveries[0]["id"], "pending", 0)
    assert _json("webhooks", "deliveries", "--state", "failed")["items"] == []

    types = [e["type"] for e in _json("events", "list", "--license", issued["id"])["items"]]
    assert "activation.created" in types
    assert "activation.deactivated" in types
    assert _json("events", "list", "--type", "license.revoked")["total"] == 0

    audit = _json("audit", "list", "--action", "webhook.redelivered")["items"]
    assert [(a["actor"], a["target_id"]) for a in audit] == [(cli_actor().name, deliveries[0]["id"])]
    assert _json("audit", "list", "--target-id", issued["id"], "--since", "2000-01-01")["total"] >= 1
    assert _json("audit", "list", "--until", "2000-01-01")["items"] == []


def test_a_redelivery_of_no_delivery_is_the_error_shape(cli_env: Settings) -> None:  # noqa: F811
    result = CliRunner().invoke(cli, ["webhooks", "redeliver", str(uuid.uuid4()), "--json"])
    answer = json.loads(result.stdout)
    assert (result.exit_code, set(answer)) == (1, {"error", "detail", "fields"})
    assert "not_found" in answer["error"]
