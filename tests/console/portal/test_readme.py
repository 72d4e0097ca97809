"""The README's portal walk-through works exactly as written, against a real server on a fresh directory."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import BIN, Cli, Server, cli, server

__all__ = ["cli", "server"]
pytestmark = pytest.mark.slow
README = Path(__file__).parents[3] / "README.md"


def portal_walkthrough() -> str:
    block = re.search(
        r"<!-- portal-walkthrough:begin -->\n```bash\n(.*?)```\n<!-- portal-walkthrough:end -->",
        README.read_text(),
        re.S,
    )
    assert block, "README has no portal walk-through block"
    return block.group(1)


def test_readme_portal_walkthrough_runs_as_written(cli: Cli, server: Server) -> None:
    script = portal_walkthrough().replace("http://127.0.0.1:8000", server.url)
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
    assert lines[-3:] == ["owner", f"{server.url}/portal/start/lspl_…", "303 401"]
