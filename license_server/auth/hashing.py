"""Keyed hashing for secrets stored at rest (license keys, admin tokens).

Only HMAC-SHA256 digests under a server-side key are stored, so a copy of the database alone cannot be used to
test guesses. Lookups go by digest; comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac


class SecretHasher:
    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the secret-hashing key must be at least 32 bytes")
        self._key = key
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)  # copied per digest: the key schedule is done once
        self._fingerprint_key = hmac.new(key, b"failed-auth fingerprints", hashlib.sha256).digest()

    def digest(self, secret: str) -> str:
        keyed = self._keyed.copy()
        keyed.update(secret.encode("utf-8"))
        return keyed.hexdigest()

    def matches(self, secret: str, stored_digest: str) -> bool:
        return hmac.compare_digest(self.digest(secret), stored_digest)

    def fingerprint(self, secret: str | None) -> bytes:
        """What the failed-auth limiter remembers of a wrong secret: a short hash under a key derived from this one,
        so every replica gives one wrong secret the same fingerprint (and it counts once), and it matches no stored
        digest."""
        return hashlib.blake2b((secret or "").encode(), key=self._fingerprint_key, digest_size=16).digest()
