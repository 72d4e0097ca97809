"""The README's "Use with Dify Cloud billing" walk-through works exactly as written, against a real server."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import BIN, Cli, Server

pytestmark = pytest.mark.slow
README = Path(__file__).parents[2] / "README.md"


def dify_billing_walkthrough() -> str:
    text = README.read_text()
    block = re.search(
        r"<!-- dify-billing-walkthrough:begin -->\n```bash\n(.*?)```\n<!-- dify-billing-walkthrough:end -->", text, re.S
    )
    assert block, "README has no Dify Cloud billing walk-through block"
    return block.group(1)


def test_readme_dify_billing_walkthrough_runs_as_written(cli: Cli, server: Server) -> None:
    """Seed 000's plans, the platform and its secret, Dify's subscription and quota reads, an upgrade, and a run's
    reserve, commit and release-after-commit."""
    script = dify_billing_walkthrough().replace("http://127.0.0.1:8000", server.url)
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
    assert lines[lines.index("sandbox {'size': 0, 'limit': 10}") :] == [
        "sandbox {'size': 0, 'limit': 10}",  # step 2
        "-1",
        "active",  # step 3
        "team True",
        "run-1",  # step 4
        "0",
        "0",
        "1",
    ]
