"""The one signer. Holds the loaded keyring and notices rotations made by other processes."""

from __future__ import annotations

import base64
import threading
import time
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import jwt
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.audit import record_audit
from license_server.clock import Clock, utcnow
from license_server.errors import KeyringError
from license_server.jose import LICENSE_DOCUMENT_TYPE
from license_server.signing.keys import IssuingKey, Keyring, KeyStore

if TYPE_CHECKING:
    from license_server.auth.tokens import Actor


class Signer:
    def __init__(self, store: KeyStore, *, refresh_seconds: float = 5.0) -> None:
        self._store = store
        self._refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._keyring: Keyring | None = None
        self._loaded_version = b""
        self._checked_at = 0.0

    @property
    def store(self) -> KeyStore:
        return self._store

    def keyring(self) -> Keyring:
        """The current keyring, re-read when keyring.json changed (a rotation by the CLI or another replica)."""
        now = time.monotonic()
        if self._keyring is not None and now - self._checked_at < self._refresh_seconds:
            return self._keyring
        with self._lock:
            self._checked_at = now
            version = self._store.keyring_version()
            if self._keyring is None or version != self._loaded_version:
                self._keyring = self._store.load()
                self._loaded_version = version
            return self._keyring

    def reload(self) -> Keyring:
        with self._lock:
            version = self._store.keyring_version()  # read first: a change during load() is seen next time
            self._keyring = self._store.load()
            self._loaded_version = version
            self._checked_at = time.monotonic()
            return self._keyring

    def sign(self, claims: dict[str, Any], *, typ: str = LICENSE_DOCUMENT_TYPE) -> str:
        """A JWS compact serialization, EdDSA, carrying the key id and the root's certificate of the key."""
        keyring = self.keyring()
        signer = keyring.signer
        if signer.private_key is None:
            raise KeyringError("the signing key's private half is not loaded")
        headers = {"typ": typ, "kid": signer.kid, "x5c": [base64.b64encode(signer.certificate_der).decode()]}
        return jwt.encode(claims, signer.private_key, algorithm="EdDSA", headers=headers)


async def rotate_signing_key(
    session: AsyncSession, *, actor: Actor, signer: Signer, clock: Clock = utcnow
) -> IssuingKey:
    previous = signer.keyring().signer_kid
    kid = await anyio.to_thread.run_sync(signer.store.rotate)
    keyring = signer.reload()
    await record_audit(
        session,
        actor=actor,
        action="key.rotated",
        target_type="key",
        target_id=kid,
        detail={"previous_signer": previous},
        clock=clock,
    )
    await session.commit()
    return keyring.keys[kid]


async def retire_signing_key(
    session: AsyncSession, *, actor: Actor, signer: Signer, kid: str, clock: Clock = utcnow
) -> IssuingKey:
    await anyio.to_thread.run_sync(signer.store.retire, kid)
    keyring = signer.reload()
    await record_audit(
        session, actor=actor, action="key.retired", target_type="key", target_id=kid, detail={}, clock=clock
    )
    await session.commit()
    return keyring.keys[kid]
