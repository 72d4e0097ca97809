"""One walk over the whole ``license-server`` command tree: every command takes ``--json``, every usage error answers
the one error shape under it (exit 2), and every list command answers the one list shape (the HTTP API's page).

The tree is read from click itself, so a command added later is checked without being named here; a list command
this file does not know how to call fails the test until it is added to ``LIST_ARGS``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from license_server.auth.tokens import cli_actor
from license_server.billing.accounts import service as accounts
from license_server.billing.plans import service as plans
from license_server.cli.main import cli
from license_server.config import Settings
from license_server.runtime import Runtime
from tests.billing.conftest import tiny_plan
from tests.billing.credits.test_cli import cli_env  # noqa: F401 - the fixture, shared
from tests.conftest import _truncate_all

# Commands that run a server until stopped: their output is the log (JSON lines by the logging settings), so a
# --json flag would have nothing to shape. Their usage errors still answer JSON when --json is on the line.
SERVERS = {("serve",), ("scheduler",), ("edge", "serve")}

ERROR_KEYS = {"error", "detail", "fields"}
PAGE_KEYS = {"items", "total", "limit", "offset"}


def _leaves(group: click.Group, ctx: click.Context, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], click.Command]:
    found: dict[tuple[str, ...], click.Command] = {}
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, (*path, name)
        if isinstance(command, click.Group):
            found.update(_leaves(command, ctx, (*path, name)))
        else:
            found[(*path, name)] = command
    return found


COMMANDS = _leaves(cli, click.Context(cli))


def _is_list(path: tuple[str, ...]) -> bool:
    """A list command by name: ``list``, or a command that lists one kind of row."""
    return path[-1] in {"list", "ledger", "deliveries"} or path == ("billing", "usage")


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), (
        args,
        result.exception,
    )
    return result.exit_code, result.stdout


def test_the_walk_found_the_whole_tree() -> None:
    """A guard on the walk itself: top-level commands, nested groups and the commands added for issue 15."""
    assert len(COMMANDS) > 90
    for expected in [
        ("licenses", "list"),
        ("licenses", "workspace-policy", "list"),
        ("billing", "credits", "ledger"),
        ("webhooks", "redeliver"),
        ("audit", "list"),
        ("activations", "list"),
        ("plans", "update"),
    ]:
        assert expected in COMMANDS


@pytest.mark.parametrize("path", sorted(set(COMMANDS) - SERVERS), ids=" ".join)
def test_every_command_takes_json(path: tuple[str, ...]) -> None:
    options = {opt for param in COMMANDS[path].params for opt in getattr(param, "opts", [])}
    assert "--json" in options


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_every_usage_error_is_the_json_error_shape_with_exit_2(path: tuple[str, ...]) -> None:
    code, out = _invoke(*path, "--no-such-option", "--json")
    answer = json.loads(out)
    assert (code, set(answer), answer["error"]) == (2, ERROR_KEYS, "usage_error"), out
    assert "--no-such-option" in answer["detail"]
    assert out.count("\n") == 1  # one object, nothing else on stdout

    required = [p for p in COMMANDS[path].params if p.required]
    if required and path not in SERVERS:  # click's own "missing ..." error, before the command's code runs
        code, out = _invoke(*path, "--json")
        answer = json.loads(out)
        assert (code, set(answer), answer["error"]) == (2, ERROR_KEYS, "usage_error"), out
        assert answer["fields"][0]["field"] in answer["detail"]


def test_without_json_a_usage_error_stays_clicks_usage_text() -> None:
    result = CliRunner().invoke(cli, ["licenses", "show"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Missing argument 'LICENSE_ID'" in result.stderr


def _world(settings: Settings, tmp_path: Path) -> dict[str, str]:
    """One of each parent the list commands need: a license, an edge install, a platform account with an invoice."""

    async def billing() -> str:
        runtime = Runtime.build(settings)
        try:
            if not settings.is_sqlite:  # the session's PostgreSQL database holds other tests' rows
                await _truncate_all(runtime)
            async with runtime.session_factory() as session:
                await plans.import_catalogue(session, actor=cli_actor(), catalogue=tiny_plan("pro", {}, price="100"))
                created = await accounts.create_platform(session, actor=cli_actor(), hasher=runtime.hasher, name="P")
                await accounts.create_subscription(
                    session,
                    actor=cli_actor(),
                    platform_id=uuid.UUID(str(created.platform.id)),
                    external_id="ws-1",
                    plan="pro",
                    anchor=datetime.now(UTC) - timedelta(days=1),
                )
                return str(created.platform.id)
        finally:
            await runtime.close()

    platform = asyncio.run(billing())
    assert _json("billing", "invoices", "issue")["issued"] == 1
    customer = _json("customers", "create", "--name", "Acme")["id"]
    issued = _json("licenses", "issue", "--customer", customer, "--expires", "2030-01-01")
    edge_dir = tmp_path / "edge"
    _json(
        "offline",
        "request",
        "--license-key",
        issued["key"],
        "--out",
        str(tmp_path / "request.txt"),
        "--data-dir",
        str(edge_dir),
    )
    return {
        "license": issued["id"],
        "platform": platform,
        "invoice": _json("billing", "invoices", "list")["items"][0]["number"],
        "edge": str(edge_dir),
    }


def _json(*args: str) -> Any:
    code, out = _invoke(*args, "--json")
    assert code == 0, (args, out)
    return json.loads(out)


Args = Callable[[dict[str, str]], list[str]]
ACCOUNT: Args = lambda w: ["--platform", w["platform"], "--account", "ws-1"]  # noqa: E731
LIST_ARGS: dict[tuple[str, ...], Args] = {
    ("keys", "list"): lambda w: [],
    ("customers", "list"): lambda w: [],
    ("plans", "list"): lambda w: [],
    ("licenses", "list"): lambda w: [],
    ("licenses", "credentials", "list"): lambda w: [w["license"]],
    ("licenses", "workspace-policy", "list"): lambda w: [w["license"]],
    ("tokens", "list"): lambda w: [],
    ("activations", "list"): lambda w: [],
    ("webhooks", "list"): lambda w: [],
    ("webhooks", "deliveries"): lambda w: [],
    ("events", "list"): lambda w: [],
    ("audit", "list"): lambda w: [],
    ("edge", "credentials", "list"): lambda w: ["--data-dir", w["edge"]],
    ("edge", "workspaces", "list"): lambda w: ["--data-dir", w["edge"]],
    ("billing", "accounts", "list"): lambda w: ["--platform", w["platform"]],
    ("billing", "credits", "ledger"): ACCOUNT,
    ("billing", "invoices", "list"): lambda w: [],
    ("billing", "payments", "list"): lambda w: [w["invoice"]],
    ("billing", "plans", "list"): lambda w: [],
    ("billing", "platforms", "list"): lambda w: [],
    ("billing", "subscriptions", "list"): ACCOUNT,
    ("billing", "usage"): ACCOUNT,
    ("staff", "list"): lambda w: [],
}


def test_every_list_command_is_known_here() -> None:
    assert {path for path in COMMANDS if _is_list(path)} == set(LIST_ARGS)


@pytest.mark.usefixtures("backend")
def test_every_list_command_answers_the_one_page_shape(cli_env: Settings, tmp_path: Path) -> None:  # noqa: F811
    world = _world(cli_env, tmp_path)
    empty = []
    for path, args in LIST_ARGS.items():
        page = _json(*path, *args(world))
        assert set(page) == PAGE_KEYS, (path, page)
        assert isinstance(page["items"], list), path
        assert isinstance(page["total"], int), (path, page)
        assert page["total"] >= len(page["items"]), (path, page)
        assert page["limit"] is None or isinstance(page["limit"], int), (path, page)
        assert page["offset"] == 0, (path, page)
        if not page["items"]:
            empty.append(path)
            code, text = _invoke(*path, *args(world))
            assert code == 0, (path, text)
            assert text.startswith("No "), (path, text)
            assert text.endswith(".\n"), (path, text)
            assert text.count("\n") == 1, (path, text)
    # the world has rows for most lists; a few stay empty and so check the "No <things>." line
    assert ("webhooks", "list") in empty
    assert ("licenses", "list") not in empty


@pytest.mark.usefixtures("backend")
def test_timestamps_are_utc_with_a_z_as_the_http_api_writes_them(cli_env: Settings) -> None:  # noqa: F811
    keys = _json("keys", "list")["items"]
    customer = _json("customers", "create", "--name", "Acme")
    assert keys
    assert all(k["created_at"].endswith("Z") for k in keys)
    assert customer["created_at"].endswith("Z")
    datetime.fromisoformat(keys[0]["created_at"])  # still ISO 8601


def test_a_refused_input_and_a_refused_action_answer_the_same_error_shape_with_exit_1(
    cli_env: Settings,  # noqa: F811
) -> None:
    code, out = _invoke("customers", "create", "--name", "", "--json")  # refused while reading the input
    answer = json.loads(out)
    assert (code, set(answer), answer["error"]) == (1, ERROR_KEYS, "validation_error")
    assert answer["fields"][0]["field"] == "customer.name"

    code, out = _invoke("customers", "show", str(uuid.uuid4()), "--json")  # refused by the service
    answer = json.loads(out)
    assert (code, set(answer)) == (1, ERROR_KEYS)
    assert answer["error"].endswith("not_found")


@pytest.mark.usefixtures("backend")
def test_customers_update_changes_what_it_is_given_and_clears_on_request(cli_env: Settings) -> None:  # noqa: F811
    customer = _json("customers", "create", "--name", "Acme", "--email", "ops@acme.example", "--external-id", "crm-1")
    renamed = _json("customers", "update", customer["id"], "--name", "Acme Corp")
    assert (renamed["name"], renamed["contact_email"], renamed["external_id"]) == (
        "Acme Corp",
        "ops@acme.example",
        "crm-1",
    )
    cleared = _json("customers", "update", customer["id"], "--clear-email", "--clear-external-id")
    assert (cleared["contact_email"], cleared["external_id"]) == (None, None)
    assert _json("customers", "show", customer["id"]) == cleared
    code, out = _invoke("customers", "update", customer["id"], "--email", "not an address", "--json")
    answer = json.loads(out)
    assert (code, answer["error"], answer["fields"][0]["field"]) == (1, "validation_error", "customer.contact_email")
