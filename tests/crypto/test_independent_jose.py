"""An independent JOSE implementation (jwcrypto) verifies our documents from the published JWKS alone."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jwcrypto import jwk, jws
from jwcrypto.common import JWException

from license_server.signing.keys import KeyStore
from license_server.signing.service import Signer
from tests.keyring import retire, rotate


def _jwks(store: KeyStore) -> jwk.JWKSet:
    """Only what a third party gets: the JWKS document, as JSON text."""
    return jwk.JWKSet.from_json(json.dumps(store.load().jwks()))


def _verify_with_jwcrypto(token: str, keys: jwk.JWKSet) -> tuple[dict[str, Any], dict[str, Any]]:
    signed = jws.JWS()
    signed.deserialize(token)
    signed.allowed_algs = ["EdDSA"]
    signed.verify(keys)  # picks the key by the header's kid
    header = signed.jose_header
    assert isinstance(header, dict)
    claims = json.loads(signed.payload)
    assert isinstance(claims, dict)
    return header, claims


def test_jwcrypto_verifies_a_signer_document_from_the_jwks_alone(
    store: KeyStore, signer: Signer, claims: dict[str, Any]
) -> None:
    token = signer.sign(claims)
    header, verified = _verify_with_jwcrypto(token, _jwks(store))
    assert verified == claims
    assert header["kid"] == store.load().signer_kid
    assert header["alg"] == "EdDSA"
    assert header["typ"] == "license+jwt"


def test_jwks_keys_have_rfc7638_thumbprints_as_kid_according_to_jwcrypto(store: KeyStore) -> None:
    rotate(store)
    keys = _jwks(store)
    assert len(keys["keys"]) == 2
    for key in keys["keys"]:
        assert key.thumbprint() == key.get("kid")
        assert not key.has_private


def test_jwcrypto_verifies_old_and_new_documents_from_the_jwks_after_rotation(
    store: KeyStore, signer: Signer, claims: dict[str, Any]
) -> None:
    old_token = signer.sign(claims)
    old_kid = store.load().signer_kid
    new_kid = rotate(store)
    new_claims = {**claims, "jti": "after-rotation"}
    new_token = signer.sign(new_claims)
    keys = _jwks(store)
    old_header, old_verified = _verify_with_jwcrypto(old_token, keys)
    new_header, new_verified = _verify_with_jwcrypto(new_token, keys)
    assert (old_header["kid"], old_verified) == (old_kid, claims)
    assert (new_header["kid"], new_verified) == (new_kid, new_claims)


def test_jwcrypto_refuses_a_document_of_a_retired_key_once_it_left_the_jwks(
    store: KeyStore, signer: Signer, claims: dict[str, Any]
) -> None:
    old_token = signer.sign(claims)
    old_kid = store.load().signer_kid
    rotate(store)
    retire(store, old_kid)
    with pytest.raises(JWException):
        _verify_with_jwcrypto(old_token, _jwks(store))


@pytest.mark.parametrize("segment", [0, 1, 2])
def test_jwcrypto_refuses_a_tampered_document(
    store: KeyStore, signer: Signer, claims: dict[str, Any], segment: int
) -> None:
    token = signer.sign(claims)
    keys = _jwks(store)
    _verify_with_jwcrypto(token, keys)  # the untampered document passes
    parts = token.split(".")
    # Change a character in the middle of the segment to another base64url character.
    middle = len(parts[segment]) // 2
    replacement = "A" if parts[segment][middle] != "A" else "B"
    parts[segment] = parts[segment][:middle] + replacement + parts[segment][middle + 1 :]
    with pytest.raises((JWException, ValueError)):
        _verify_with_jwcrypto(".".join(parts), keys)


def test_jwcrypto_refuses_a_document_signed_under_another_root(
    store: KeyStore, other_store: KeyStore, claims: dict[str, Any]
) -> None:
    foreign = Signer(other_store, refresh_seconds=0).sign(claims)
    with pytest.raises(JWException):
        _verify_with_jwcrypto(foreign, _jwks(store))
