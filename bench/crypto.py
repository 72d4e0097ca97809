"""Signing and offline verification against raw Ed25519 from ``cryptography``.

Each benchmark times the product's path and a baseline doing the irreducible work (one Ed25519 operation on the
same bytes) in the same process, interleaved, best of several rounds, and reports the ratio.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench.common import Report, Row, percent, print_report, rate
from license_server.offline import files
from license_server.signing.keys import KeyStore, create_dev_keys
from license_server.signing.root import RootKeyStore
from license_server.signing.service import Signer
from license_server.verifier import Verifier

LICENSE_FILE_TARGET = 0.80  # issue 5: at least 80 % of raw Ed25519 verify throughput on the same payload
IMPORT_TARGET_MS = 150.0

ROUNDS, SECONDS_PER_ROUND = 5, 0.4


def throughput(operation: Callable[[], object]) -> float:
    """Operations per second: best of ROUNDS rounds of about SECONDS_PER_ROUND each."""
    best = 0.0
    for _ in range(ROUNDS):
        count, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < SECONDS_PER_ROUND:
            for _ in range(50):
                operation()
            count += 50
        best = max(best, count / elapsed)
    return best


PAIRED_SECONDS, PAIRED_BATCH = 3.0, 20


def paired_throughput(operation: Callable[[], object], baseline: Callable[[], object]) -> tuple[float, float]:
    """Both throughputs per CPU second, measured in alternating batches of PAIRED_BATCH calls.

    Interleaving at this grain (a few milliseconds) makes a shared machine's changing load fall on both alike;
    CPU time of this process, not wall time, leaves other sessions' work out of it.
    """
    spent = {operation: 0.0, baseline: 0.0}
    batches = 0
    while sum(spent.values()) < PAIRED_SECONDS:
        for measured in (operation, baseline) if batches % 2 else (baseline, operation):
            started = time.process_time()
            for _ in range(PAIRED_BATCH):
                measured()
            spent[measured] += time.process_time() - started
        batches += 1
    calls = batches * PAIRED_BATCH
    return calls / spent[operation], calls / spent[baseline]


def sample_claims(now: int) -> dict[str, object]:
    return {
        "ver": 1,
        "iss": "bench",
        "sub": "license",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "status": "active",
        "limits": {"workspaces": {"enabled": True, "limit": 20}},
        "entitlements": {f"feature_{i}": True for i in range(20)},
    }


def run() -> Report:
    with tempfile.TemporaryDirectory() as directory:
        store = KeyStore(Path(directory), b"bench-passphrase")
        create_dev_keys(
            store, RootKeyStore(Path(directory) / "root", b"bench-passphrase"), passphrase=b"bench-passphrase"
        )
        signer = Signer(store, refresh_seconds=60)
        keyring = signer.keyring()
        private = keyring.signer.private_key
        assert private is not None
        now = int(datetime.now(UTC).timestamp())
        token = signer.sign(sample_claims(now))
        signing_input, _, _ = token.rpartition(".")
        signature = private.sign(signing_input.encode())
        public = keyring.signer.public_key
        verifier = Verifier(keyring.root_public_key)

        file_claims = {**sample_claims(now), "binding": {"activation_id": "a", "fingerprint": "f", "install_key": "k"}}
        file_token = signer.sign(file_claims)
        license_file = files.armor(file_token, file_claims)
        file_input, _, _ = file_token.rpartition(".")
        file_signature = private.sign(file_input.encode())
        # Interleaved with its own baseline (the same payload's bytes), so machine load affects both alike.
        file_verify, raw_file_verify = paired_throughput(
            lambda: files.verify_license_file(license_file, verifier, fingerprint="f"),
            lambda: public.verify(file_signature, file_input.encode()),
        )
        raw_verify = throughput(lambda: public.verify(signature, signing_input.encode()))
        document_verify = throughput(lambda: verifier.verify(token))
        raw_sign = throughput(lambda: private.sign(signing_input.encode()))
        document_sign = throughput(lambda: signer.sign(sample_claims(now)))

    measured = [
        ("offline verification of a license document", document_verify, "raw Ed25519 verify", raw_verify),
        ("signing a license document", document_sign, "raw Ed25519 sign", raw_sign),
    ]
    rows = [
        Row(name, rate(value), baseline_name, rate(baseline), percent(value / baseline))
        for name, value, baseline_name, baseline in measured
    ]
    file_ratio = file_verify / raw_file_verify
    rows.insert(
        0,
        Row(
            "offline verification of a license file (armored, bound)",
            rate(file_verify),
            "raw Ed25519 verify, same payload",
            rate(raw_file_verify),
            f"{percent(file_ratio)} / ≥ {percent(LICENSE_FILE_TARGET)}",
            file_ratio >= LICENSE_FILE_TARGET,
        ),
    )
    rows += import_rows()
    note = (
        f"crypto: token {len(token)} bytes, license file {len(license_file)} bytes; best of {ROUNDS} rounds of "
        f"{SECONDS_PER_ROUND}s; the license-file ratio from {PAIRED_SECONDS:.0f}s of CPU time in interleaved batches. "
        f"Imports: best of {IMPORT_RUNS} fresh interpreters, minus bare interpreter start-up."
    )
    return Report(rows, [note])


IMPORT_RUNS = 7


def _fresh_interpreter_ms(code: str) -> float:
    best = float("inf")
    for _ in range(IMPORT_RUNS):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-I", "-c", code], check=True)
        best = min(best, (time.perf_counter() - started) * 1000)
    return best


def import_rows() -> list[Row]:
    """``import license_server.client`` (and the verifier) in a fresh interpreter, against a bare interpreter."""
    bare = _fresh_interpreter_ms("pass")
    rows = []
    for module in ("license_server.client", "license_server.verifier"):
        cost = _fresh_interpreter_ms(f"import {module}") - bare
        rows.append(
            Row(
                f"import {module} (fresh interpreter)",
                f"{cost:.0f} ms",
                "bare interpreter start-up",
                f"{bare:.0f} ms",
                f"< {IMPORT_TARGET_MS:.0f} ms",
                cost < IMPORT_TARGET_MS,
            )
        )
    return rows


def main() -> None:
    print_report(run())


if __name__ == "__main__":
    main()
