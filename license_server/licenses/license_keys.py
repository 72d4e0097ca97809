"""License keys: 160 random bits, a recognisable prefix, grouped for humans who type them into air-gapped installs.

Shown once; only a keyed hash is stored (see ``auth.hashing``).
"""

from __future__ import annotations

import re
import secrets

KEY_PREFIX = "LSK"
# Crockford's base32: no I, L, O or U, so keys survive being read aloud or retyped.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
GROUPS, GROUP_LENGTH = 8, 4  # 32 characters x 5 bits = 160 bits
KEY_PATTERN = re.compile(rf"^{KEY_PREFIX}(-[{ALPHABET}]{{{GROUP_LENGTH}}}){{{GROUPS}}}$")


def generate_license_key() -> str:
    body = "".join(secrets.choice(ALPHABET) for _ in range(GROUPS * GROUP_LENGTH))
    groups = [body[i : i + GROUP_LENGTH] for i in range(0, len(body), GROUP_LENGTH)]
    return "-".join([KEY_PREFIX, *groups])


def normalise_license_key(key: str) -> str:
    """Keys are matched case-insensitively and without surrounding whitespace."""
    return key.strip().upper()


def looks_like_license_key(key: str) -> bool:
    return bool(KEY_PATTERN.match(normalise_license_key(key)))


def key_hint(key: str) -> str:
    return key[-4:]
