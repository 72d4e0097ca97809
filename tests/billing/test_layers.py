"""Imports point down: the billing package loads nothing from the layers above it (deployments, offline, inner API,
edge, the app factories, the CLI), checked in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

ABOVE = ("deployments", "offline", "inner_api", "edge", "app", "cli", "runtime", "dependencies", "console")
MODULES = [
    "license_server.billing.limits",
    "license_server.billing.periods",
    "license_server.billing.controllers",
    "license_server.billing.usage.jobs",
    "license_server.billing.usage.service",
    "license_server.billing.accounts.service",
    "license_server.billing.plans.service",
]


def test_billing_imports_nothing_from_the_layers_above() -> None:
    script = (
        "import importlib, sys\n"
        f"for name in {MODULES!r}: importlib.import_module(name)\n"
        f"above = {ABOVE!r}\n"
        "print(sorted(m for m in sys.modules if m.startswith('license_server.') and m.split('.')[1] in above))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_pure_functions_import_only_the_standard_library() -> None:
    script = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import license_server.billing.limits, license_server.billing.periods\n"
        "print(sorted(m for m in set(sys.modules) - before if m.startswith(('license_server.', 'sqlalchemy', "
        "'pydantic', 'litestar')) and not m.startswith('license_server.billing')))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
