"""The README's walk-through works exactly as written, against a real server on a fresh directory."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import BIN, Cli, Server, free_port

pytestmark = pytest.mark.slow
README = Path(__file__).parents[2] / "README.md"


def walkthrough() -> str:
    text = README.read_text()
    block = re.search(r"<!-- walkthrough:begin -->\n```bash\n(.*?)```\n<!-- walkthrough:end -->", text, re.S)
    assert block, "README has no walk-through block"
    return block.group(1)


def test_readme_walkthrough_runs_as_written(cli: Cli, server: Server) -> None:
    script = walkthrough().replace("http://127.0.0.1:8000", server.url)
    (cli.cwd / ".venv").symlink_to(BIN.parent)  # the walk-through runs from a checkout with its .venv
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cli.cwd,
        env={**cli.env, "HOME": str(cli.cwd)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    lines = result.stdout.splitlines()
    assert any(line.startswith("LSK-") for line in lines)
    assert "VALID  signed by" in result.stdout
    tail = lines[lines.index("inactive") :]
    assert tail == [
        "inactive",
        "SUSPENDED",
        "True",
        "inactive SUSPENDED oidc",
        "2",  # steps 3-5
        "304",
        "'status': 'active'",  # step 6
        "{'workspaces': 2, 'members_per_workspace': 8, 'licensed_seats': 12}",
        "dify-1 12",  # step 7
    ]


def test_makefile_run_target_is_init_then_serve() -> None:
    """`make run` must do what the README says: set up if missing, then serve on 127.0.0.1:8000."""
    makefile = (README.parent / "Makefile").read_text()
    recipe = makefile.split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "license-server init --dev" in recipe
    # the address is the default 127.0.0.1:8000, and PORT=... / HOST=... move it (make -n prints, runs nothing)
    root = README.parent
    default = subprocess.run(["make", "-n", "run"], cwd=root, capture_output=True, text=True, check=True).stdout
    assert "license-server serve --host 127.0.0.1 --port 8000" in default
    moved = subprocess.run(
        ["make", "-n", "run", "PORT=9123", "HOST=0.0.0.0"], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    assert "license-server serve --host 0.0.0.0 --port 9123" in moved
    assert os.access(README.parent / ".ci" / "run", os.X_OK)
    assert "make test" in (README.parent / ".ci" / "run").read_text()


def offline_walkthrough() -> str:
    text = README.read_text()
    block = re.search(
        r"<!-- offline-walkthrough:begin -->\n```bash\n(.*?)```\n<!-- offline-walkthrough:end -->", text, re.S
    )
    assert block, "README has no offline walk-through block"
    return block.group(1)


def test_readme_offline_walkthrough_runs_as_written(cli: Cli, server: Server) -> None:
    """Both flows: the client library against the server, and files + the edge for an air-gapped install."""
    edge_port = free_port()
    script = offline_walkthrough().replace("http://127.0.0.1:8000", server.url).replace("8100", str(edge_port))
    (cli.cwd / ".venv").symlink_to(BIN.parent)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cli.cwd,
        env={**cli.env, "HOME": str(cli.cwd)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    lines = result.stdout.splitlines()
    assert "active ACTIVE True True" in lines  # the connected client
    assert "new_activation: True" in lines  # the answer took a seat
    tail = lines[lines.index("True") :]
    usage = "{'workspaces': 1, 'members_per_workspace': 9, 'licensed_seats': 9}"
    assert tail == [
        "True",  # step 3
        "license-status: active",
        usage,  # step 4, recorded by the edge
        "active {'enabled': True, 'limit': 10, 'used': 1}",  # step 4, Dify's /inner/api/info on the edge
        "wrote usage-1.json: usage report 1 with 1 measurement(s)",
        usage,  # step 5, imported by the vendor: the license's usage now
        "1",  # step 5 again: a replay answers the first import's answer
        "False",  # step 6
        "{'database': 'ok', 'license_file': 'ok'}",
    ]


def billing_walkthrough() -> str:
    text = README.read_text()
    block = re.search(
        r"<!-- billing-walkthrough:begin -->\n```bash\n(.*?)```\n<!-- billing-walkthrough:end -->", text, re.S
    )
    assert block, "README has no hosted-billing walk-through block"
    return block.group(1)


def test_readme_billing_walkthrough_runs_as_written(cli: Cli, server: Server) -> None:
    """Plans import, a platform, an account, consume until refused, reserve and commit, the limits report, and the
    credits burn-down."""
    script = billing_walkthrough().replace("http://127.0.0.1:8000", server.url)
    (cli.cwd / ".venv").symlink_to(BIN.parent)
    (cli.cwd / "examples").symlink_to(README.parent / "examples")
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cli.cwd,
        env={**cli.env, "HOME": str(cli.cwd)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    lines = result.stdout.splitlines()
    tail = lines[lines.index("trialing") :]
    assert tail[:-3] == [
        "trialing",  # step 3
        "org-42: prompt_generation.max_monthly_count = 2",
        "active",
        "14",
        "201 201 403 ",  # step 4
        "subscription_limit_reached",
        "7 3",  # step 5
        "dynamiq-pro",  # step 6
        "app_invocation.max_monthly_count 7 / 100000",
        "knowledge_base_retrieval.max_monthly_count 0 / unlimited",
        "prompt_generation.max_monthly_count 2 / 2",
        "20",  # step 7
        "201 402 ",
        "credits_exhausted",
        "org-42: flex on",
        "prepaid 7.5 + flex 5 | balance -5",
    ]
    # The ledger, newest first; its lines start with the movement id and time.
    ledger = [re.sub(r"^\s*\d+\s+\S+\s+", "", line) for line in tail[-3:]]
    assert [" ".join(line.split()) for line in ledger] == [
        "debit -12.5 (prepaid 7.5, flex 5)",
        "debit -12.5 (prepaid 12.5)",
        "grant 20",
    ]
