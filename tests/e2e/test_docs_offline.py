"""The API docs load with the network cut off: the server and the system Chromium run in a network namespace of
their own (``unshare -n``, only loopback), and Swagger UI must still render every page from this server's assets.

Skipped with the reason where Chromium, Playwright or unprivileged network namespaces are missing, unless
LICENSE_SERVER_REQUIRE_BROWSER=1 (CI) makes that a failure.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.console.conftest import CHROMIUM, REQUIRE_BROWSER, browser_unavailable_reason
from tests.e2e.conftest import LICENSE_SERVER, clean_env

PROBE = Path(__file__).with_name("docs_offline_probe.py")


def _unavailable() -> str | None:
    reason = browser_unavailable_reason()
    if reason:
        return reason
    unshare = shutil.which("unshare")
    if unshare is None:
        return "unshare (util-linux) is not installed"
    tried = subprocess.run([unshare, "-n", "true"], capture_output=True, text=True, check=False)
    if tried.returncode != 0:
        return f"this user cannot make a network namespace: {tried.stderr.strip()}"
    return None


@pytest.fixture
def unshare() -> str:
    reason = _unavailable()
    if reason:
        if REQUIRE_BROWSER:
            pytest.fail(f"{reason}; LICENSE_SERVER_REQUIRE_BROWSER=1 forbids skipping", pytrace=False)
        print(f"\nSKIPPING the offline docs test: {reason}")
        pytest.skip(reason)
    found = shutil.which("unshare")
    assert found is not None
    return found


def test_docs_pages_render_from_this_server_with_the_network_namespace_cut_off(unshare: str, tmp_path: Path) -> None:
    probe = subprocess.run(
        # port 8000 is free: the namespace has its own ports
        [unshare, "-n", sys.executable, str(PROBE), str(tmp_path), LICENSE_SERVER, str(CHROMIUM), "8000"],
        cwd=Path(__file__).parents[2],
        env=clean_env(PYTHONPATH=str(Path(__file__).parents[2])),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    log = tmp_path / "server.log"
    assert probe.returncode == 0, f"{probe.stdout}\n{probe.stderr}\n{log.read_text() if log.exists() else ''}"
    result = json.loads(probe.stdout.strip().splitlines()[-1])
    assert result["outside_unreachable"], "the namespace still reached an outside address"
    for path, page in result["pages"].items():
        assert page["rendered"] > 0, f"{path}: Swagger UI rendered no operation"
        assert page["tags"] >= 15, f"{path}: Swagger UI read {page['tags']} tags from the schema"
        assert page["operations"] >= 150, f"{path}: Swagger UI read {page['operations']} operations"
        assert "License Server" in (page["title"] or ""), path
        assert page["failed"] == [], f"{path}: requests failed offline: {page['failed']}"
        assert page["elsewhere"] == [], f"{path}: requests left the machine: {page['elsewhere']}"
