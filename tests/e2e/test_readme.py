"""The README's walk-through works exactly as written, against a real server on a fresh directory."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import BIN, Cli, Server

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
    assert "license-server serve --host 127.0.0.1 --port 8000" in recipe
    assert os.access(README.parent / ".ci" / "run", os.X_OK)
    assert "make test" in (README.parent / ".ci" / "run").read_text()
