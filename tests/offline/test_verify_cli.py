"""``license-server verify`` takes license files too, with ``--fingerprint auto|VALUE``."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from license_server.cli.verify import verify
from license_server.offline import files
from license_server.offline.install import load_or_create_install_key
from license_server.signing.keys import KeyStore
from license_server.verifier.fingerprint import default_fingerprint
from tests.offline.conftest import FINGERPRINT, LicenseFileFactory


@pytest.fixture
def root_pub(tmp_path: Path, offline_store: KeyStore) -> Path:
    path = tmp_path / "root.pub"
    path.write_bytes(offline_store.load().root_public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return path


def _verify(path: Path, root_pub: Path, *extra: str) -> tuple[int, dict[str, object]]:
    result = CliRunner().invoke(verify, [str(path), "--root-key", str(root_pub), "--json", *extra])
    return result.exit_code, json.loads(result.output)


def test_verify_checks_a_license_files_binding_and_refuses_changes(
    tmp_path: Path, root_pub: Path, make_license_file: LicenseFileFactory
) -> None:
    path = tmp_path / "customer.lic"
    path.write_text(make_license_file(now=datetime.now(UTC)))
    code, out = _verify(path, root_pub, "--fingerprint", FINGERPRINT)
    assert (code, out["valid"]) == (0, True)
    code, out = _verify(path, root_pub, "--fingerprint", "auto")  # this machine is not the one it is bound to
    assert (code, out["reason"]) == (1, "FINGERPRINT_MISMATCH")
    path.write_text(path.read_text().replace("Customer: ", "Customer: Not "))
    code, out = _verify(path, root_pub)
    assert (code, out["reason"]) == (1, "MALFORMED")


def test_the_default_fingerprint_is_stable_hashed_and_falls_back_past_missing_sources(tmp_path: Path) -> None:
    machine_id = tmp_path / "machine-id"
    machine_id.write_text("0123456789abcdef0123456789abcdef\n")
    first = default_fingerprint((tmp_path / "absent", machine_id))
    assert first == default_fingerprint((machine_id,))  # the same identifier, the same fingerprint
    assert first.startswith("fp1:")
    assert "0123456789abcdef" not in first
    assert len(first) == 4 + 64
    zeros = tmp_path / "zeros"
    zeros.write_text("0" * 32)
    assert default_fingerprint((zeros,)) == default_fingerprint((tmp_path / "absent",))  # placeholder: hostname
    assert default_fingerprint() == default_fingerprint()


def test_the_edge_command_refuses_to_start_on_a_file_for_another_machine(
    tmp_path: Path, root_pub: Path, make_license_file: LicenseFileFactory
) -> None:
    """Before anything listens: exit 1 with the reason code."""
    data_dir = tmp_path / "edge-data"
    key = files.install_key_id(load_or_create_install_key(data_dir).public_key())
    binding = {"activation_id": "7d1f0c3c-2d7a-4c4e-9d0b-8f6f0c2b7a11", "fingerprint": FINGERPRINT, "install_key": key}
    license_file = tmp_path / "customer.lic"
    license_file.write_text(make_license_file(now=datetime.now(UTC), binding=binding))
    arguments = ["--license-file", str(license_file), "--root-key", str(root_pub), "--data-dir", str(data_dir)]
    result = subprocess.run(
        [str(Path(sys.executable).parent / "license-server"), "edge", *arguments, "--fingerprint", "fp1:elsewhere"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "FINGERPRINT_MISMATCH" in result.stderr
