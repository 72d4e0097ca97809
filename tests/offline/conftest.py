"""Fixtures for the offline tests: a keyring, an install key, and license files signed without a database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from license_server.offline import files
from license_server.signing.keys import KeyStore
from license_server.signing.service import Signer
from license_server.verifier import Verifier
from tests.crypto.conftest import NOW, fixed_clock, make_claims
from tests.keyring import make_keys

FINGERPRINT = "fp1:" + "ab" * 32
PASSPHRASE = b"offline-test-passphrase"


@pytest.fixture(scope="session")
def offline_store(tmp_path_factory: pytest.TempPathFactory) -> KeyStore:
    return make_keys(tmp_path_factory.mktemp("offline-keys"), PASSPHRASE)


@pytest.fixture(scope="session")
def offline_signer(offline_store: KeyStore) -> Signer:
    return Signer(offline_store, refresh_seconds=3600)


@pytest.fixture
def offline_verifier(offline_store: KeyStore) -> Verifier:
    return Verifier(offline_store.load().root_public_key, clock=fixed_clock(NOW))


@pytest.fixture(scope="session")
def install_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


LicenseFileFactory = Callable[..., str]


@pytest.fixture
def make_license_file(offline_signer: Signer, install_key: Ed25519PrivateKey) -> LicenseFileFactory:
    """An armored license file bound to FINGERPRINT and the install key; keywords override claims."""

    def make(ttl: timedelta = timedelta(days=365), now: datetime = NOW, **overrides: Any) -> str:
        claims = make_claims(now, ttl=ttl)
        claims["binding"] = {
            "activation_id": "7d1f0c3c-2d7a-4c4e-9d0b-8f6f0c2b7a11",
            "fingerprint": FINGERPRINT,
            "install_key": files.install_key_id(install_key.public_key()),
        }
        claims.update(overrides)
        token = offline_signer.sign(claims)
        return files.armor(token, claims)

    return make


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "edge-data"
