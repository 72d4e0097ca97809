"""Fixtures for the cryptographic tests: every test gets its own freshly generated keyring in tmp_path."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from license_server.signing.keys import KeyStore
from license_server.signing.service import Signer
from license_server.verifier import Verifier, load_root_public_key
from tests.keyring import make_keys

# A fixed instant, so expiry and not-before checks do not depend on when the tests run.
NOW = datetime(2031, 3, 14, 15, 9, 26, tzinfo=UTC)
PASSPHRASE = b"correct horse battery staple"


def fixed_clock(moment: datetime) -> Callable[[], datetime]:
    def clock() -> datetime:
        return moment

    return clock


def make_claims(now: datetime = NOW, ttl: timedelta = timedelta(days=7), **overrides: Any) -> dict[str, Any]:
    """A representative schema-version-1 claim set (see license_server/licenses/documents.py)."""
    issued_at = int(now.timestamp())
    claims: dict[str, Any] = {
        "ver": 1,
        "iss": "https://licenses.example.test",
        "sub": "5f0c3c1e-2d7a-4c4e-9d0b-8f6f0c2b7a11",
        "jti": secrets.token_hex(16),
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + int(ttl.total_seconds()),
        "license_id": "5f0c3c1e-2d7a-4c4e-9d0b-8f6f0c2b7a11",
        "customer": {"id": "c0ffee00-0000-4000-8000-000000000001", "name": "Ünïcødé GmbH", "external_id": None},
        "plan": {"id": "9a3e0b2c-0000-4000-8000-000000000002", "code": "enterprise", "name": "Enterprise"},
        "status": "active",
        "status_reason": "within_term",
        "starts_at": "2031-01-01T00:00:00Z",
        "expires_at": "2032-01-01T00:00:00Z",
        "grace_days": 14,
        "grace_ends_at": "2032-01-15T00:00:00Z",
        "enforcement": "soft",
        "notice_days": 30,
        "heartbeat_window_days": 7,
        "max_activations": 3,
        "limits": {
            "workspaces": {"limit": 10},
            "members_per_workspace": {"limit": 50},
            "licensed_seats": {"limit": 500},
        },
        "sso": {"enabled": True},
        "entitlements": {"audit_log": True, "export": False},
    }
    claims.update(overrides)
    return claims


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    return tmp_path / "keys"


@pytest.fixture
def store(keys_dir: Path) -> KeyStore:
    """An initialised, passphrase-encrypted keyring."""
    return make_keys(keys_dir, PASSPHRASE, clock=fixed_clock(NOW))


@pytest.fixture
def signer(store: KeyStore) -> Signer:
    return Signer(store, refresh_seconds=0)


@pytest.fixture
def verifier(store: KeyStore) -> Verifier:
    """A verifier that pins only root.pub, as an offline customer install would."""
    return Verifier(load_root_public_key(store.keys_dir / "root.pub"), clock=fixed_clock(NOW))


@pytest.fixture
def claims() -> dict[str, Any]:
    return make_claims()


@pytest.fixture
def other_store(tmp_path: Path) -> KeyStore:
    """A second, unrelated keyring with its own root."""
    return make_keys(tmp_path / "other-keys", PASSPHRASE, clock=fixed_clock(NOW))
