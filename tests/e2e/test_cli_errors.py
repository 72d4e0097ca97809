"""Wrong input to the real ``license-server`` command is one clear line and a non-zero exit, never a traceback.

JSON option values are read by the HTTP body rules (no duplicate keys, nesting bounded before parsing); a value that
is not acceptable JSON is a usage error: exit 2, one line naming the option, or one JSON object under ``--json``.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Cli

NOT_ACCEPTABLE_JSON = {
    "not json": ("not json", "not valid JSON"),
    "not an object": ("[]", "must be a JSON object"),
    "duplicate key": ('{"notice_days": 3, "notice_days": 90}', "the key 'notice_days' appears more than once"),
    "100,000 levels": ("[" * 100_000, "nested more than 32 levels deep"),
}


@pytest.fixture
def initialised(cli: Cli) -> Cli:
    cli.run("init", "--dev")
    return cli


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def terms_commands(cli: Cli) -> list[list[str]]:
    """The commands taking --terms: issue first (every bad value is tried there), then update and plans create."""
    customer = cli.json("customers", "create", "--name", "Acme Corp")["id"]
    license_id = cli.json("licenses", "issue", "--customer", customer, "--expires", "2030-01-01")["id"]
    return [
        ["licenses", "issue", "--customer", customer, "--expires", "2030-01-01"],
        ["licenses", "update", license_id],
        ["plans", "create", "--code", "p", "--name", "P"],
    ]


def test_terms_that_are_not_acceptable_json_are_a_one_line_usage_error_naming_the_option(initialised: Cli) -> None:
    cli = initialised
    issue, *others = terms_commands(cli)
    tries = [(issue, value, message) for value, message in NOT_ACCEPTABLE_JSON.values()]
    tries += [(command, *NOT_ACCEPTABLE_JSON["not json"]) for command in others]
    for command, value, message in tries:
        result = cli.run(*command, "--terms", value, check=False)
        assert result.returncode == 2, (command, message, result.stderr)
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith("error [usage_error]: --terms: "), result.stderr
        assert message in result.stderr, result.stderr
    assert cli.json("licenses", "list")["total"] == 1  # only the one terms_commands issued
    assert cli.json("plans", "list")["items"] == []


def test_under_json_a_bad_terms_value_is_one_json_object_on_stdout(initialised: Cli) -> None:
    cli = initialised
    issue = terms_commands(cli)[0]
    for value, message in NOT_ACCEPTABLE_JSON.values():
        result = cli.run(*issue, "--terms", value, "--json", check=False)
        assert (result.returncode, result.stderr) == (2, ""), (message, result.stderr)
        answer = json.loads(result.stdout)
        assert answer["error"] == "usage_error"
        assert answer["detail"].startswith("--terms: ")
        assert message in answer["detail"]
    invalid = cli.run(*issue, "--terms", '{"max_activations": -1}', "--json", check=False)
    assert (invalid.returncode, invalid.stderr) == (1, ""), invalid.stderr
    assert json.loads(invalid.stdout)["error"] == "validation_error"


@pytest.mark.parametrize(
    "command", [["offline", "respond", "FILE", "--out", "answer.lic"], ["offline", "import-usage", "FILE"]]
)
def test_offline_files_nested_past_the_limit_are_refused_in_one_line(initialised: Cli, command: list[str]) -> None:
    cli = initialised
    (cli.cwd / "deep.json").write_text("[" * 100_000)
    result = cli.run(*[("deep.json" if part == "FILE" else part) for part in command], check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr == "error [offline_malformed]: nested more than 32 levels deep\n"


def test_serve_on_a_busy_port_says_so_in_one_line(initialised: Cli, busy_port: int) -> None:
    result = initialised.run("serve", "--host", "127.0.0.1", "--port", str(busy_port), "--no-scheduler", check=False)
    assert result.returncode == 1
    assert (result.stdout, result.stderr) == ("", f"error [port_in_use]: port {busy_port} on 127.0.0.1 is in use\n")


def test_edge_on_a_busy_port_says_so_in_one_line(cli: Cli, busy_port: int) -> None:
    result = cli.run(
        "edge",
        "--license-file",
        "customer.lic",
        "--root-key",
        "root.pub",
        "--host",
        "127.0.0.1",
        "--port",
        str(busy_port),
        check=False,
    )
    assert result.returncode == 1
    assert (result.stdout, result.stderr) == ("", f"error [port_in_use]: port {busy_port} on 127.0.0.1 is in use\n")
