"""The `license-server billing ...` names other tools script against, with their --json shapes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import Cli

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).parents[2] / "examples" / "plans"


def test_the_scripted_billing_commands_work_as_named(cli: Cli) -> None:
    cli.run("init", "--dev")
    for catalogue in ("dify-cloud.json", "dynamiq.json", "roboflow.json"):
        imported = cli.json("billing", "plans", "import", str(EXAMPLES / catalogue))
        assert imported["created"]
        assert not imported["updated"]
    again = cli.json("billing", "plans", "import", str(EXAMPLES / "dify-cloud.json"))
    assert (again["created"], again["updated"]) == ([], [])  # idempotent
    codes = {p["code"] for p in cli.json("billing", "plans", "list")["items"]}
    assert {"dify-sandbox", "dify-professional", "dify-team", "dynamiq-pro", "roboflow-core"} <= codes

    platform = cli.json("billing", "platforms", "create", "--name", "Dify Cloud", "--default-plan", "dify-sandbox")
    assert {"id", "secret", "secret_id", "name"} <= set(platform)
    assert platform["secret"].startswith("lsbp_")
    pid = platform["id"]
    subscription = cli.json(
        "billing",
        "subscriptions",
        "create",
        "--platform",
        pid,
        "--account",
        "tenant-1",
        "--plan",
        "dify-team",
        "--trial-days",
        "7",
    )
    assert (subscription["plan"], subscription["status"]) == ("dify-team", "trialing")
    assert cli.json(
        "billing",
        "overrides",
        "set",
        "--platform",
        pid,
        "--account",
        "tenant-1",
        "--key",
        "apps",
        "--limit",
        "unlimited",
    ) == {"key": "apps", "limit": None}
    assert cli.json(
        "billing", "overrides", "set", "--platform", pid, "--account", "tenant-1", "--key", "members", "--limit", "4"
    ) == {"key": "members", "limit": 4}
    assert cli.json("billing", "flex", "enable", "--platform", pid, "--account", "tenant-1")["flex_enabled"]
    assert not cli.json("billing", "flex", "disable", "--platform", pid, "--account", "tenant-1")["flex_enabled"]
    shown = cli.json("billing", "accounts", "show", "--platform", pid, "--account", "tenant-1")
    limits = {e["key"]: e for e in shown["limits"]["limits"]}
    assert shown["status"] == "active"
    assert shown["limits"]["plan"] == "dify-team"
    assert "limit" not in limits["apps"]
    assert limits["members"]["limit"] == 4

    bad = cli.run(
        "billing",
        "overrides",
        "set",
        "--platform",
        pid,
        "--account",
        "tenant-1",
        "--key",
        "apps",
        "--limit",
        "-3",
        check=False,
    )
    assert bad.returncode != 0
    assert "validation_error" in bad.stderr
