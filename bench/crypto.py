"""Signing and offline verification against raw Ed25519 from ``cryptography``.

Each benchmark times the product's path and a baseline doing the irreducible work (one Ed25519 operation on the
same bytes) in the same process, interleaved, best of several rounds, and reports the ratio.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench.common import Report, Row, percent, print_report, rate
from license_server.signing.keys import KeyStore
from license_server.signing.service import Signer
from license_server.verifier import Verifier

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
        store.initialise()
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
    note = f"crypto: token {len(token)} bytes; best of {ROUNDS} rounds of {SECONDS_PER_ROUND}s; no target (context)."
    return Report(rows, [note])


def main() -> None:
    print_report(run())


if __name__ == "__main__":
    main()
