"""``licenses issue --from-csv``: one license per row, each row its own transaction, a keyed row issued only once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from license_server.cli.main import cli
from license_server.config import Settings
from license_server.runtime import Runtime
from tests.billing.credits.test_cli import cli_env  # noqa: F401 - the fixture, shared
from tests.conftest import _truncate_all

pytestmark = pytest.mark.usefixtures("backend", "empty_database")


@pytest.fixture
def empty_database(cli_env: Settings) -> None:  # noqa: F811
    """The session's PostgreSQL database holds other tests' rows; these tests count licenses."""
    if cli_env.is_sqlite:
        return

    async def truncate() -> None:
        runtime = Runtime.build(cli_env)
        try:
            await _truncate_all(runtime)
        finally:
            await runtime.close()

    asyncio.run(truncate())


def _run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def _json(*args: str) -> Any:
    result = _run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _csv(tmp_path: Path, text: str) -> str:
    path = tmp_path / "licenses.csv"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_rows_are_issued_a_bad_row_is_reported_and_a_keyed_row_is_issued_once(
    cli_env: Settings,  # noqa: F811
    tmp_path: Path,
) -> None:
    customer = _json("customers", "create", "--name", "Acme")["id"]
    _json("plans", "create", "--code", "team", "--name", "Team", "--max-activations", "3")
    csv_file = _csv(
        tmp_path,
        "customer,expires,plan,terms,idempotency_key\n"
        f'{customer},2030-01-01,team,"{{""max_activations"": 7}}",crm-1\n'
        "not-a-uuid,2030-01-01,,,crm-2\n"
        f"{customer},2031-06-30T00:00:00Z,,,\n"
        "\n",
    )

    first = _run("licenses", "issue", "--from-csv", csv_file, "--json")
    assert first.exit_code == 1  # a row failed
    answer = json.loads(first.stdout)  # the progress bar is on stderr: stdout is one object
    assert (answer["issued"], answer["existing"], answer["failed"]) == (2, 0, 1)
    keyed, bad, unkeyed = answer["rows"]
    assert (keyed["row"], keyed["result"], keyed["license"]["effective_terms"]["max_activations"]) == (2, "issued", 7)
    assert keyed["license"]["key"].startswith("LSK-")
    assert (bad["row"], bad["result"], bad["error"], bad["fields"][0]["field"]) == (
        3,
        "failed",
        "validation_error",
        "customer",
    )
    assert (unkeyed["result"], unkeyed["license"]["expires_at"]) == ("issued", "2031-06-30T00:00:00Z")

    again = json.loads(_run("licenses", "issue", "--from-csv", csv_file, "--json").stdout)
    assert [r["result"] for r in again["rows"]] == ["existing", "failed", "issued"]
    assert again["rows"][0]["license"]["id"] == keyed["license"]["id"]
    assert "key" not in again["rows"][0]["license"]  # shown once, on the run that issued it
    assert _json("licenses", "list")["total"] == 3  # crm-1 once, the unkeyed row on each run


def test_a_wrong_header_is_a_usage_error_before_any_license_is_issued(
    cli_env: Settings,  # noqa: F811
    tmp_path: Path,
) -> None:
    customer = _json("customers", "create", "--name", "Acme")["id"]
    csv_file = _csv(tmp_path, f"customer,expiry\n{customer},2030-01-01\n")
    result = _run("licenses", "issue", "--from-csv", csv_file, "--json")
    answer = json.loads(result.stdout)
    assert (result.exit_code, answer["error"]) == (2, "usage_error")
    assert "unknown column(s) expiry" in answer["detail"]
    assert "missing column(s) expires" in answer["detail"]
    assert _json("licenses", "list")["total"] == 0


def test_from_csv_takes_no_other_license_option_and_text_mode_prints_each_key(
    cli_env: Settings,  # noqa: F811
    tmp_path: Path,
) -> None:
    customer = _json("customers", "create", "--name", "Acme")["id"]
    csv_file = _csv(tmp_path, f"customer,expires\n{customer},2030-01-01\n")
    mixed = _run("licenses", "issue", "--from-csv", csv_file, "--customer", customer, "--json")
    assert (mixed.exit_code, json.loads(mixed.stdout)["error"]) == (2, "usage_error")

    text = _run("licenses", "issue", "--from-csv", csv_file)
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert lines[0].startswith("row 2: license ")
    assert "key (shown once, store it now): LSK-" in lines[0]
    assert lines[-1] == "1 issued, 0 existing, 0 failed"
