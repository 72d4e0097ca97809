"""Encryption at rest for secrets the server must read back, such as webhook signing secrets.

A hash will not do for those: the server signs with them. They are sealed with AES-256-GCM under a key derived
(HKDF-SHA256, one ``purpose`` per kind of secret) from the server's secret-hashing key, which lives in ``keys/``
(0600) and never in the database, so a copy of the database alone reveals none of them. Each value is bound to its
row (the associated data), so a sealed secret copied onto another row does not open there.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from license_server.errors import SecretUnreadable

FORMAT_VERSION = "v1"
NONCE_BYTES = 12
WEBHOOK_SECRETS = "webhook-secrets"  # the purpose webhook signing secrets are sealed for


class SecretBox:
    def __init__(self, key_material: bytes, *, purpose: str) -> None:
        if len(key_material) < 32:
            raise ValueError("the key material must be at least 32 bytes")
        info = f"license-server {purpose} {FORMAT_VERSION}".encode()
        key = HKDF(algorithm=SHA256(), length=32, salt=None, info=info).derive(key_material)
        self._aead = AESGCM(key)

    def seal(self, plaintext: str, *, bound_to: str) -> str:
        """``v1:`` + base64url(nonce + ciphertext + tag); ``bound_to`` (e.g. the row id) must match to open it."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), bound_to.encode())
        return f"{FORMAT_VERSION}:{base64.urlsafe_b64encode(nonce + sealed).decode('ascii')}"

    def open(self, token: str, *, bound_to: str) -> str:
        version, _, encoded = token.partition(":")
        try:
            if version != FORMAT_VERSION:
                raise ValueError(f"unknown format {version[:8]!r}")
            raw = base64.urlsafe_b64decode(encoded.encode("ascii"))
            return self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], bound_to.encode()).decode()
        except (InvalidTag, ValueError) as exc:
            raise SecretUnreadable() from exc
