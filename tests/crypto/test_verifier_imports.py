"""The offline verifier can be embedded without the server's web and database stack."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY_MODULES = ("litestar", "sqlalchemy", "pydantic", "alembic", "uvicorn", "asyncpg", "aiosqlite")

PROBE = """
import json, sys
import license_server.verifier
from license_server.verifier import Verifier, load_root_public_key, Reason
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def _modules_after_import() -> set[str]:
    completed = subprocess.run(
        [sys.executable, "-I", "-c", PROBE], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    loaded = json.loads(completed.stdout)
    assert isinstance(loaded, list)
    return set(loaded)


def test_importing_the_verifier_in_a_fresh_interpreter_loads_no_web_database_or_pydantic_modules() -> None:
    loaded = _modules_after_import()
    assert "license_server" in loaded  # the probe really imported it
    assert "cryptography" in loaded
    assert not loaded & set(HEAVY_MODULES), sorted(loaded & set(HEAVY_MODULES))


def test_the_import_probe_detects_a_heavy_module_when_one_is_imported() -> None:
    """Guards the test above: the probe would notice sqlalchemy if something pulled it in."""
    completed = subprocess.run(
        [sys.executable, "-I", "-c", "import sqlalchemy\n" + PROBE],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "sqlalchemy" in json.loads(completed.stdout)
