"""``license-server billing credits grant|balance|ledger`` as scripts use them: the --json keys are a contract."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from click.testing import CliRunner

from license_server.auth.tokens import cli_actor
from license_server.billing.accounts import service as accounts
from license_server.cli.main import cli
from license_server.config import Settings
from license_server.runtime import Runtime
from tests.conftest import PASSPHRASE, _truncate_all


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The CLI reads its settings from the environment: point it at this test's database and keys."""
    monkeypatch.setenv("LICENSE_SERVER_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("LICENSE_SERVER_KEYS_DIR", str(settings.keys_dir))
    monkeypatch.setenv("LICENSE_SERVER_KEY_PASSPHRASE", PASSPHRASE.decode())
    if settings.database_url:
        monkeypatch.setenv("LICENSE_SERVER_DATABASE_URL", settings.database_url)
    return settings


def _platform(settings: Settings) -> str:
    async def create() -> str:
        runtime = Runtime.build(settings)
        try:
            async with runtime.session_factory() as session:
                if not settings.is_sqlite:  # the session's PostgreSQL database holds other tests' rows
                    await _truncate_all(runtime)
                created = await accounts.create_platform(
                    session, actor=cli_actor(), hasher=runtime.hasher, name="Roboflow"
                )
                return str(created.platform.id)
        finally:
            await runtime.close()

    return asyncio.run(create())


def _json(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, json.loads(result.output)


@pytest.mark.usefixtures("backend")
def test_grant_then_balance_and_ledger(cli_env: Settings) -> None:
    platform = _platform(cli_env)
    account = ["--platform", platform, "--account", "ws-7"]
    code, granted = _json(
        "billing",
        "credits",
        "grant",
        *account,
        "--kind",
        "prepaid",
        "--amount",
        "20.5",
        "--idempotency-key",
        "p-1",
        "--json",
    )
    assert code == 0, granted
    assert (granted["kind"], granted["amount"], granted["grant"]["kind"], granted["replayed"]) == (
        "grant",
        "20.5",
        "prepaid",
        False,
    )
    code, again = _json(
        "billing",
        "credits",
        "grant",
        *account,
        "--kind",
        "prepaid",
        "--amount",
        "20.50",
        "--idempotency-key",
        "p-1",
        "--json",
    )
    assert (code, again["replayed"], again["id"]) == (0, True, granted["id"])
    code, promo = _json(
        "billing",
        "credits",
        "grant",
        *account,
        "--kind",
        "promotional",
        "--amount",
        "5",
        "--expires",
        "2099-01-01",
        "--json",
    )
    assert (code, promo["grant"]["expires_at"]) == (0, "2099-01-01T00:00:00Z")
    code, balance = _json("billing", "credits", "balance", *account, "--json")
    assert (code, balance["available"], balance["prepaid"], balance["promotional"]) == (0, "25.5", "20.5", "5")
    code, ledger = _json("billing", "credits", "ledger", *account, "--json")
    assert (code, ledger["total"], [m["amount"] for m in ledger["items"]]) == (0, 2, ["5", "20.5"])


@pytest.mark.usefixtures("backend")
@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--kind", "promotional", "--amount", "5"], "validation_error"),
        (["--kind", "prepaid", "--amount", "0.0000001"], "validation_error"),
        (["--kind", "prepaid", "--amount", "-3"], "validation_error"),
    ],
)
def test_bad_grants_fail_cleanly_with_a_code(cli_env: Settings, args: list[str], error: str) -> None:
    platform = _platform(cli_env)
    result = CliRunner().invoke(
        cli, ["billing", "credits", "grant", "--platform", platform, "--account", "ws", *args, "--json"]
    )
    assert result.exit_code == 1
    assert json.loads(result.output)["error"] == error


def test_a_float_looking_typo_is_a_usage_error(cli_env: Settings) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "billing",
            "credits",
            "grant",
            "--platform",
            "00000000-0000-0000-0000-000000000000",
            "--account",
            "a",
            "--kind",
            "prepaid",
            "--amount",
            "ten",
        ],
    )
    assert result.exit_code == 2
    assert "decimal number" in result.output
