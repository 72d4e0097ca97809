"""Settings from the command line: a misspelt variable refuses start-up; ``config show`` masks every secret."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import Cli, free_port

pytestmark = pytest.mark.slow


def test_a_misspelt_database_url_refuses_to_start_and_names_the_right_one(cli: Cli) -> None:
    cli.run("init", "--dev")
    database = cli.cwd / "data" / "license-server.db"
    before = database.stat().st_mtime_ns
    cli.env = {**cli.env, "LICENSE_SERVER_DATABSE_URL": "postgresql+asyncpg://db.internal/licenses"}
    refused = cli.run("serve", "--port", str(free_port()), check=False)
    assert refused.returncode != 0
    assert "LICENSE_SERVER_DATABSE_URL" in refused.stderr
    assert "did you mean LICENSE_SERVER_DATABASE_URL?" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert database.stat().st_mtime_ns == before, "it served (and migrated) the local SQLite file anyway"
    # every command reads the same settings, so each refuses the same way
    assert cli.run("config", "show", check=False).returncode != 0


def test_config_show_prints_the_effective_settings_with_secrets_masked(cli: Cli) -> None:
    secrets = {
        "LICENSE_SERVER_KEY_PASSPHRASE": "passphrase-that-must-not-show",
        "LICENSE_SERVER_METRICS_TOKEN": "metrics-token-that-must-not-show",
        "LICENSE_SERVER_EDGE_TOKEN": "edge-token-that-must-not-show",
    }
    cli.env = {
        **cli.env,
        **secrets,
        "LICENSE_SERVER_DATABASE_URL": "postgresql+asyncpg://licenses:db-password-not-shown@db.internal/licenses",
        "LICENSE_SERVER_PORT": "9123",
    }
    shown = cli.json("config", "show")
    assert shown["port"] == 9123
    assert shown["key_passphrase"] == "********"
    assert shown["metrics_token"] == "********"
    assert shown["install_key_passphrase"] is None  # unset secrets say so
    assert shown["database_url"] == "postgresql+asyncpg://licenses:***@db.internal/licenses"
    human = cli.run("config", "show").stdout
    assert "port" in human
    assert "9123" in human
    for output in (json.dumps(shown), human):
        for secret in [*secrets.values(), "db-password-not-shown"]:
            assert secret not in output
