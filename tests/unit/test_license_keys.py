"""License keys: format, entropy, normalisation, keyed hashing."""

from __future__ import annotations

import math

from license_server.auth.hashing import SecretHasher
from license_server.licenses.license_keys import (
    ALPHABET,
    generate_license_key,
    looks_like_license_key,
    normalise_license_key,
)


def test_keys_have_prefix_groups_and_at_least_128_bits() -> None:
    key = generate_license_key()
    assert key.startswith("LSK-")
    body = key.removeprefix("LSK-").replace("-", "")
    assert len(body) * math.log2(len(ALPHABET)) >= 128
    assert looks_like_license_key(key)


def test_keys_are_unique_across_many_draws() -> None:
    assert len({generate_license_key() for _ in range(5000)}) == 5000


def test_keys_match_case_insensitively_and_ignoring_surrounding_space() -> None:
    key = generate_license_key()
    assert normalise_license_key(f"  {key.lower()}\n") == key


def test_hash_is_keyed_and_comparison_matches_only_the_same_secret() -> None:
    key = generate_license_key()
    first, second = SecretHasher(b"a" * 32), SecretHasher(b"b" * 32)
    assert first.digest(key) != second.digest(key)
    assert key not in first.digest(key)
    assert first.matches(key, first.digest(key))
    assert not first.matches(generate_license_key(), first.digest(key))
