"""Small JOSE helpers shared by the signer and the verifier. Imports only the standard library and cryptography."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

LICENSE_DOCUMENT_TYPE = "license+jwt"
KEY_REVOCATIONS_TYPE = "key-revocations+jwt"


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode_strict(segment: str | bytes) -> bytes:
    """Decode base64url and insist on the canonical form.

    ``base64.urlsafe_b64decode`` ignores stray characters and the unused low bits of the last character, so two
    different strings can decode to the same bytes. A verifier that accepted both would let a changed document pass.
    Checked without re-encoding (this is on the verifier's hot path): no padding, no characters of the other
    alphabet, a possible length, and zero unused bits in the last character.
    """
    data = segment.encode("ascii") if isinstance(segment, str) else segment
    remainder = len(data) % 4
    if remainder == 1 or b"=" in data or b"+" in data or b"/" in data:
        raise ValueError("non-canonical base64url")
    # strict_mode refuses anything outside the (translated) alphabet and misplaced padding, like validate=True.
    decoded = binascii.a2b_base64(data.translate(_TO_STANDARD_ALPHABET) + _PADDING[remainder], strict_mode=True)
    if remainder and _B64URL_ALPHABET.index(data[-1]) & _UNUSED_BITS[remainder]:
        raise ValueError("non-canonical base64url")
    return decoded


_B64URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_PADDING = {0: b"", 2: b"==", 3: b"="}
_UNUSED_BITS = {2: 0x0F, 3: 0x03}
_TO_STANDARD_ALPHABET = bytes.maketrans(b"-_", b"+/")  # the low bits of the last character that carry no data


def raw_public_bytes(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def public_jwk(public_key: Ed25519PublicKey) -> dict[str, str]:
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw_public_bytes(public_key))}


def thumbprint(public_key: Ed25519PublicKey) -> str:
    """RFC 7638 JWK thumbprint (SHA-256): the key id of every key we publish."""
    jwk = public_jwk(public_key)
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x")}, separators=(",", ":"), sort_keys=True)
    return b64url_encode(hashlib.sha256(canonical.encode()).digest())


def compact_jws(header: dict[str, object], claims: dict[str, object], sign: Callable[[bytes], bytes]) -> str:
    """An EdDSA JWS compact serialization (RFC 7515 §7.1) signed by ``sign``, which sees only the signing input: a
    local key, a KMS or an HSM can do the signing. JSON is encoded as PyJWT does (sorted header, compact separators),
    so documents stay byte-identical to those signed before signing moved behind this function."""
    protected = json.dumps({"alg": "EdDSA", **header}, separators=(",", ":"), sort_keys=True)
    payload = json.dumps(claims, separators=(",", ":"))
    signing_input = f"{b64url_encode(protected.encode())}.{b64url_encode(payload.encode())}"
    return f"{signing_input}.{b64url_encode(sign(signing_input.encode('ascii')))}"
