"""``license-server billing invoices issue|show|void|pdf`` and ``billing payments record|refund|fail|list``: staff
at a terminal move invoices like the admin API does; the --json keys are a contract."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pypdf
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

pytestmark = pytest.mark.usefixtures("backend")


def _subscribed(settings: Settings, anchor: datetime) -> None:
    async def create() -> None:
        runtime = Runtime.build(settings)
        try:
            if not settings.is_sqlite:
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
                    anchor=anchor,
                )
        finally:
            await runtime.close()

    asyncio.run(create())


def _json(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_issue_pay_refund_and_fail_from_the_command_line(cli_env: Settings, tmp_path: Path) -> None:  # noqa: F811
    _subscribed(cli_env, datetime.now(UTC) - timedelta(days=1))
    assert _json("billing", "invoices", "issue", "--json") == {"issued": 1}
    assert _json("billing", "invoices", "issue", "--json") == {"issued": 0}
    listed = _json("billing", "invoices", "list", "--json")["items"]
    number = listed[0]["number"]
    assert (listed[0]["status"], listed[0]["total"]) == ("open", "100.00 USD")

    paid = _json(
        "billing",
        "payments",
        "record",
        number,
        "--amount",
        "100.00",
        "--idempotency-key",
        "wire-1",
        "--reference",
        "BANK-42",
        "--json",
    )
    assert (paid["invoice"]["status"], paid["payment"]["reference"], paid["replayed"]) == ("paid", "BANK-42", False)
    again = _json(
        "billing",
        "payments",
        "record",
        number,
        "--amount",
        "100.00",
        "--idempotency-key",
        "wire-1",
        "--reference",
        "BANK-42",
        "--json",
    )
    assert again["replayed"] is True
    refunded = _json("billing", "payments", "refund", number, "--amount", "25", "--reason", "outage", "--json")
    assert refunded["payment"]["amount"] == "-25"
    assert refunded["invoice"]["credit_notes"][0]["amount"] == "25.00"
    kinds = [p["kind"] for p in _json("billing", "payments", "list", number, "--json")["items"]]
    assert sorted(kinds) == ["payment", "refund"]

    refused = CliRunner().invoke(cli, ["billing", "invoices", "void", number, "--reason", "x", "--json"])
    assert refused.exit_code != 0
    assert json.loads(refused.output)["error"] == "invoice_state_conflict"

    output = tmp_path / "invoice.pdf"
    result = CliRunner().invoke(cli, ["billing", "invoices", "pdf", number, "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert "Total 100.00 USD" in pypdf.PdfReader(io.BytesIO(output.read_bytes())).pages[0].extract_text()
