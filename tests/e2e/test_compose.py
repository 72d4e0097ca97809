"""compose.yaml, the scale-out path, read as docker compose would (docker itself is not needed): PostgreSQL, the
migrations once, three replicas that start only after them, one proxy address in front of exactly those replicas,
every command one the CLI accepts, every setting one the server knows, every secret a file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from license_server.cli.main import cli
from license_server.config import Settings

REPO = Path(__file__).resolve().parents[2]
REPLICAS = ("replica-1", "replica-2", "replica-3")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    parsed: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
    return parsed


def _cli_accepts(arguments: list[str]) -> click.Context:
    """Parse ``license-server ARGUMENTS`` with the real CLI, nothing run: the command's context (its parameters).
    Fails on an unknown command or option. (The commands used here take no options before their subcommand.)"""
    command: click.Command = cli
    context = click.Context(cli, info_name="license-server")
    words = list(arguments)
    while isinstance(command, click.Group):
        name = words.pop(0)
        found = command.get_command(context, name)
        assert found is not None, f"license-server has no command {name!r}"
        command, context = found, click.Context(found, info_name=name, parent=context)
    return command.make_context(context.info_name, words, parent=context.parent)


def _command_line(service: dict[str, Any], dockerfile_entrypoint: list[str]) -> list[str]:
    entrypoint = service.get("entrypoint", dockerfile_entrypoint)
    return [*entrypoint, *service.get("command", [])]


def _dockerfile_entrypoint() -> list[str]:
    match = re.search(r"^ENTRYPOINT (\[.*\])$", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    assert match, "the Dockerfile has an exec-form ENTRYPOINT"
    entrypoint: list[str] = yaml.safe_load(match.group(1))
    return entrypoint


def test_postgres_then_migrations_once_then_three_replicas_behind_one_proxy(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "migrate", *REPLICAS, "proxy"}
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert "healthcheck" in services["postgres"]
    assert services["migrate"]["restart"] == "no"
    for name in REPLICAS:
        assert services[name]["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
    assert sorted(services["proxy"]["depends_on"]) == sorted(REPLICAS)
    assert [port.split(":")[-1] for port in services["proxy"]["ports"]] == ["8000"]
    assert all("ports" not in services[name] for name in (*REPLICAS, "migrate", "postgres"))  # one address only


def test_every_command_is_one_the_cli_accepts(compose: dict[str, Any]) -> None:
    entrypoint = _dockerfile_entrypoint()
    assert entrypoint[0] == "license-server"
    migrate = _command_line(compose["services"]["migrate"], entrypoint)
    assert migrate[:1] == ["license-server"]
    assert _cli_accepts(migrate[1:]).command.name == "upgrade"
    for name in REPLICAS:
        line = _command_line(compose["services"][name], entrypoint)
        context = _cli_accepts(line[1:])
        assert context.command.name == "serve"
        assert (context.params["host"], context.params["port"]) == ("0.0.0.0", 8000)  # noqa: S104 - in a container


def test_the_proxy_spreads_over_exactly_the_replicas_on_their_port(compose: dict[str, Any]) -> None:
    [mount] = compose["services"]["proxy"]["volumes"]
    config = (REPO / mount.split(":")[0]).read_text()
    upstreams = re.findall(r"^\s*server\s+([\w-]+):(\d+)", config, re.MULTILINE)
    assert sorted(upstreams) == sorted((name, "8000") for name in REPLICAS)
    assert "proxy_pass http://license_server;" in config


def test_every_setting_is_known_and_every_secret_a_file(compose: dict[str, Any]) -> None:
    known = {f"LICENSE_SERVER_{name.upper()}" for name in Settings.model_fields}
    secrets = compose["secrets"]
    for name, service in compose["services"].items():
        for variable, value in (service.get("environment") or {}).items():
            if variable.startswith("LICENSE_SERVER_"):
                assert variable in known, (name, variable)
                assert "password" not in str(value).lower(), (name, variable)  # secrets come as files
            if variable.endswith("_FILE"):
                secret = Path(value).name
                assert value == f"/run/secrets/{secret}", (name, variable)
                assert secret in service["secrets"], (name, variable)
        for secret in service.get("secrets", []):
            assert "file" in secrets[secret], secret  # a file, never an inline value
    replica = compose["services"]["replica-1"]
    assert replica["environment"]["LICENSE_SERVER_KEY_PASSPHRASE_FILE"] == "/run/secrets/key_passphrase"
    assert replica["env_file"] == "./secrets/license-server.env"  # the database URL, with its password, as a file
