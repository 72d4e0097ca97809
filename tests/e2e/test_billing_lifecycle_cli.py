"""`license-server billing clocks ...` and the subscription verbs, as scripts call them (--json shapes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import Cli

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).parents[2] / "examples" / "plans"


def test_a_clock_drives_a_subscription_through_its_trial_and_renewals_from_the_cli(cli: Cli) -> None:
    cli.run("init", "--dev")
    cli.json("billing", "plans", "import", str(EXAMPLES / "dynamiq.json"))
    pid = cli.json("billing", "platforms", "create", "--name", "Dynamiq Cloud")["id"]
    clock = cli.json("billing", "clocks", "create", "--name", "demo", "--now", "2027-01-10")
    assert (clock["frozen_now"], clock["accounts"]) == ("2027-01-10T00:00:00Z", [])
    sub = cli.json(
        "billing", "subscriptions", "create", "--platform", pid, "--account", "org-7", "--plan", "dynamiq-pro",
        "--test-clock", clock["id"],
    )  # fmt: skip
    assert (sub["status"], sub["trial_days_remaining"], sub["anchor_at"]) == ("trialing", 14, "2027-01-10T00:00:00Z")
    moved = cli.json("billing", "clocks", "advance", clock["id"], "--months", "3")
    assert moved["frozen_now"] == "2027-04-10T00:00:00Z"
    assert moved["steps"][-3:] == ["2027-02-10T00:00:00Z", "2027-03-10T00:00:00Z", "2027-04-10T00:00:00Z"]
    assert cli.json("billing", "clocks", "show", clock["id"])["accounts"] == ["org-7"]
    shown = cli.json("billing", "subscriptions", "show", "--platform", pid, sub["id"])
    # Nobody paid: the invoice issued at the trial's end fell overdue (net days + grace) on Feb 10. Staff record the
    # payments of every open invoice, and it is active again.
    assert (shown["status"], shown["current_period_start"]) == ("past_due", "2027-04-10T00:00:00Z")
    invoices = cli.json("billing", "invoices", "list", "--platform", pid, "--account", "org-7")["items"]
    assert len(invoices) == 4  # Jan 10 (issued at the trial's end), Feb 10, Mar 10, Apr 10
    for invoice in invoices:
        if invoice["status"] == "open":
            amount = invoice["total"].split()[0]  # "99.00 USD"
            cli.json("billing", "payments", "record", invoice["number"], "--amount", amount)
    shown = cli.json("billing", "subscriptions", "show", "--platform", pid, sub["id"])
    assert shown["status"] == "active"
    down = cli.json("billing", "subscriptions", "change-plan", "--platform", pid, sub["id"], "--plan", "dynamiq-free")
    assert (down["plan"], down["pending_plan"]) == ("dynamiq-pro", "dynamiq-free")
    assert cli.json("billing", "subscriptions", "pause", "--platform", pid, sub["id"])["status"] == "paused"
    assert cli.json("billing", "subscriptions", "resume", "--platform", pid, sub["id"])["status"] == "active"
    canceled = cli.json("billing", "subscriptions", "cancel", "--platform", pid, sub["id"], "--now")
    assert canceled["status"] == "canceled"
    assert cli.json("billing", "subscriptions", "reactivate", "--platform", pid, sub["id"])["status"] == "active"
    backwards = cli.run("billing", "clocks", "advance", clock["id"], "--to", "2027-01-01", check=False)
    assert backwards.returncode != 0
    assert "clock_moves_forward_only" in backwards.stdout + backwards.stderr
