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


# The kernel modules an embedded verifier or client may load; everything else in license_server is the server's.
KERNEL_FOR_OFFLINE = {"license_server", "license_server.clock", "license_server.jose", "license_server.lifecycle"}


def _server_modules_loaded_by(statement: str, allowed_packages: tuple[str, ...]) -> list[str]:
    listing = "print(json.dumps(sorted(n for n in sys.modules if n.startswith('license_server'))))"
    probe = f"import json, sys\n{statement}\n{listing}"
    completed = subprocess.run(
        [sys.executable, "-I", "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    loaded = json.loads(completed.stdout)
    assert isinstance(loaded, list)
    assert any(name.startswith(allowed_packages) for name in loaded)  # the probe really imported it
    return [name for name in loaded if name not in KERNEL_FOR_OFFLINE and not name.startswith(allowed_packages)]


def test_the_verifier_loads_no_server_module() -> None:
    assert _server_modules_loaded_by("import license_server.verifier", ("license_server.verifier",)) == []


def test_the_client_loads_only_the_verifier_and_the_pure_status_rules() -> None:
    """Not offline (the vendor's file formats) nor anything else of the server: what it needs sits in the kernel."""
    allowed = (
        "license_server.client",
        "license_server.verifier",
        "license_server.lifecycle.status",
        "license_server.lifecycle.observer",
    )
    assert _server_modules_loaded_by("import license_server.client", allowed) == []
