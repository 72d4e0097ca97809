"""Verify a license document against a pinned root public key.

The order of checks is fixed, and each failure has a stable reason code that scripts may depend on:
MALFORMED → UNSUPPORTED_ALGORITHM → KEY_RETIRED → UNKNOWN_KEY → UNCERTIFIED_KEY → WRONG_TYPE → BAD_SIGNATURE
→ UNSUPPORTED_VERSION → NOT_YET_VALID → DOCUMENT_EXPIRED (see docs/license-document.md). ``typ`` is checked only
once the key is certified, so a wrong ``typ`` from a retired or uncertified key reports the key problem.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple, TypeGuard

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from license_server.clock import Clock, utcnow
from license_server.jose import KEY_REVOCATIONS_TYPE, LICENSE_DOCUMENT_TYPE, b64url_decode_strict, thumbprint

SUPPORTED_SCHEMA_VERSIONS = frozenset({1})


class Reason(StrEnum):
    MALFORMED = "MALFORMED"
    UNSUPPORTED_ALGORITHM = "UNSUPPORTED_ALGORITHM"
    WRONG_TYPE = "WRONG_TYPE"
    KEY_RETIRED = "KEY_RETIRED"
    UNKNOWN_KEY = "UNKNOWN_KEY"
    UNCERTIFIED_KEY = "UNCERTIFIED_KEY"
    BAD_SIGNATURE = "BAD_SIGNATURE"
    UNSUPPORTED_VERSION = "UNSUPPORTED_VERSION"
    NOT_YET_VALID = "NOT_YET_VALID"
    DOCUMENT_EXPIRED = "DOCUMENT_EXPIRED"
    # License files (license_server.offline.files) add these, checked after the signature:
    NOT_A_LICENSE_FILE = "NOT_A_LICENSE_FILE"
    FINGERPRINT_MISMATCH = "FINGERPRINT_MISMATCH"
    INSTALL_KEY_MISMATCH = "INSTALL_KEY_MISMATCH"
    ISSUED_IN_FUTURE = "ISSUED_IN_FUTURE"
    # Revocation lists (``read_revocation_list``, ``newest_revocation_list``):
    REVOCATIONS_OUTDATED = "REVOCATIONS_OUTDATED"


class VerificationError(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class VerifiedDocument(NamedTuple):  # a named tuple: the cheapest immutable record, on the hot path
    header: dict[str, Any]
    claims: dict[str, Any]

    @property
    def kid(self) -> str:
        return str(self.header["kid"])


def load_root_public_key(path: Path | str) -> Ed25519PublicKey:
    try:
        key = load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read a PEM public key from {path}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key")
    return key


@dataclass
class Verifier:
    """Verifies documents signed by any issuing key the pinned root certified and has not retired."""

    root_public_key: Ed25519PublicKey
    retired_kids: frozenset[str] = frozenset()
    clock: Clock = utcnow
    leeway: timedelta = timedelta(seconds=60)
    expected_type: str = LICENSE_DOCUMENT_TYPE
    # Certificates already checked, by their bytes: a verifier checks each issuing key's certificate once.
    _certified: dict[bytes, tuple[str, Ed25519PublicKey]] = field(default_factory=dict, repr=False)
    # Header segments that passed every header check (alg, kid, retirement, certificate, typ), by their exact text:
    # every document one issuing key signs carries the same header, so it is decoded and checked once.
    _headers: dict[str, tuple[dict[str, Any], Ed25519PublicKey]] = field(default_factory=dict, repr=False)

    def with_revocations(self, token: str) -> Verifier:
        """Trust a root-signed revocation list (``revocations.jws``) and refuse the keys it retires."""
        return self.with_revocation_list(read_revocation_list(token, self.root_public_key))

    def with_revocation_list(self, revocations: RevocationList) -> Verifier:
        """A verifier that also refuses the keys of an already verified revocation list."""
        return Verifier(
            self.root_public_key, self.retired_kids | revocations.kids, self.clock, self.leeway, self.expected_type
        )

    def verify(self, token: str | bytes) -> VerifiedDocument:
        """Authenticity, schema version and the document's validity dates (``nbf``/``exp``)."""
        document = self.verify_authentic(token)
        self.check_dates(document.claims)
        return document

    def verify_authentic(self, token: str | bytes) -> VerifiedDocument:
        """Every check but the validity dates: for callers that judge time themselves (license files, caches)."""
        if isinstance(token, bytes):
            try:
                token = token.decode("ascii")
            except UnicodeDecodeError as exc:
                raise VerificationError(Reason.MALFORMED, "document is not ASCII") from exc
        segments = _segments(token)
        cached = self._headers.get(segments[0])
        if cached is None:
            cached = self._checked_header(segments[0])
        header, public_key = cached
        claims = _verified_claims(segments, public_key)
        version = claims.get("ver")
        if not isinstance(version, int) or isinstance(version, bool) or version not in SUPPORTED_SCHEMA_VERSIONS:
            raise VerificationError(Reason.UNSUPPORTED_VERSION, f"schema version {version!r} is not supported")
        return VerifiedDocument(header, claims)

    # -- steps ------------------------------------------------------------------------------------------------
    def _checked_header(self, segment: str) -> tuple[dict[str, Any], Ed25519PublicKey]:
        header = _decode_header(segment)
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise VerificationError(Reason.MALFORMED, "header has no 'kid'")
        if kid in self.retired_kids:
            raise VerificationError(Reason.KEY_RETIRED, f"key {kid} has been retired")
        public_key = self._certified_key(header, kid)
        if header.get("typ") != self.expected_type:
            raise VerificationError(Reason.WRONG_TYPE, f"typ {header.get('typ')!r} is not {self.expected_type!r}")
        if len(self._headers) < MAX_CACHED_HEADERS:
            self._headers[segment] = (header, public_key)
        return header, public_key

    def _certified_key(self, header: dict[str, Any], kid: str) -> Ed25519PublicKey:
        chain = header.get("x5c")
        if not isinstance(chain, list) or not chain or not isinstance(chain[0], str):
            raise VerificationError(Reason.UNKNOWN_KEY, f"no certificate for key {kid} in the header")
        try:
            der = base64.b64decode(chain[0], validate=True)
        except (ValueError, binascii.Error) as exc:
            raise VerificationError(Reason.UNCERTIFIED_KEY, "certificate is not base64") from exc
        cached = self._certified.get(der)
        if cached is None:
            from cryptography import x509  # only when a certificate is first seen: keeps the import light

            try:
                certificate = x509.load_der_x509_certificate(der)
                self.root_public_key.verify(certificate.signature, certificate.tbs_certificate_bytes)
                public_key = certificate.public_key()
            except (ValueError, InvalidSignature, x509.InvalidVersion) as exc:
                raise VerificationError(Reason.UNCERTIFIED_KEY, "key is not certified by the pinned root") from exc
            if not isinstance(public_key, Ed25519PublicKey):
                raise VerificationError(Reason.UNCERTIFIED_KEY, "certified key is not Ed25519")
            cached = (thumbprint(public_key), public_key)
            self._certified[der] = cached
        certified_kid, public_key = cached
        if certified_kid != kid:
            raise VerificationError(Reason.UNCERTIFIED_KEY, "certificate is for a different key id")
        return public_key

    def check_dates(self, claims: dict[str, Any], *, at: float | None = None) -> None:
        """``nbf``/``exp`` against the verifier's clock (or ``at``, a timestamp a caller already read)."""
        moment = self.clock().timestamp() if at is None else at
        nbf, exp = claims.get("nbf"), claims.get("exp")
        if not _is_number(nbf) or not _is_number(exp):
            raise VerificationError(Reason.MALFORMED, "'nbf' and 'exp' must be numeric dates")
        leeway = self._leeway_seconds
        if moment + leeway < nbf:
            raise VerificationError(Reason.NOT_YET_VALID, f"not valid before {_iso(nbf)}")
        if moment - leeway >= exp:
            raise VerificationError(Reason.DOCUMENT_EXPIRED, f"expired at {_iso(exp)}")

    @property
    def _leeway_seconds(self) -> float:
        return self.leeway.total_seconds()


@dataclass(frozen=True)
class RevocationList:
    """A verified, root-signed list of retired issuing keys. ``sequence`` only grows: each list the root signs
    carries the next number, so a holder can refuse an older list (a replay that would un-retire a key)."""

    sequence: int
    issued_at: int
    retired: tuple[tuple[str, str | None], ...]  # (kid, retired_at) pairs, sorted by kid
    token: str

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(kid for kid, _ in self.retired)


def read_revocation_list(token: str, root_public_key: Ed25519PublicKey) -> RevocationList:
    """Verify a revocation list against the pinned root. Lists from before sequence numbers count as number 0."""
    token = token.strip()
    segments = _segments(token)
    header = _decode_header(segments[0])
    if header.get("typ") != KEY_REVOCATIONS_TYPE:
        raise VerificationError(Reason.WRONG_TYPE, f"typ {header.get('typ')!r} is not {KEY_REVOCATIONS_TYPE!r}")
    claims = _verified_claims(segments, root_public_key)
    retired = claims.get("retired")
    if not isinstance(retired, list) or not all(
        isinstance(item, dict) and isinstance(item.get("kid"), str) for item in retired
    ):
        raise VerificationError(Reason.MALFORMED, "revocation list has no 'retired' array")
    sequence, issued_at = claims.get("seq", 0), claims.get("iat", 0)
    if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 0 or not _is_number(issued_at):
        raise VerificationError(Reason.MALFORMED, "revocation list has no usable 'seq' and 'iat'")
    pairs = tuple(sorted((str(item["kid"]), _optional_str(item.get("retired_at"))) for item in retired))
    return RevocationList(sequence, int(issued_at), pairs, token)


def newest_revocation_list(held: RevocationList | None, offered: RevocationList) -> RevocationList:
    """The list to hold after ``offered`` arrives: it, unless it is older than ``held`` (then refused).

    The same sequence number with other content is refused too: the root signs each number once, so that is a
    forgery attempt or a damaged key host, never an update.
    """
    if held is None or offered.sequence > held.sequence:
        return offered
    if offered.sequence == held.sequence and offered.kids == held.kids:
        return held
    raise VerificationError(
        Reason.REVOCATIONS_OUTDATED,
        f"revocation list {offered.sequence} is older than the held list {held.sequence}"
        if offered.sequence < held.sequence
        else f"revocation list {offered.sequence} differs from the held list with the same number",
    )


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


MAX_CACHED_HEADERS = 64  # a handful of issuing keys in a verifier's life; the bound only stops hostile growth


def _segments(token: str) -> tuple[str, bytes, bytes, bytes]:
    """(header text, signing input, payload, signature): the payload and signature strictly decoded (the header is
    decoded once per distinct header). The signing input is the ASCII text of the first two segments (RFC 7515 5.2).
    """
    first, last = token.find("."), token.rfind(".")
    if first <= 0 or last <= first + 1 or last == len(token) - 1 or token.count(".", first + 1, last):
        raise VerificationError(Reason.MALFORMED, "not a JWS compact serialization")
    try:
        data = token.encode("ascii")  # once: the signing input and both segments are slices of it
        payload, signature = b64url_decode_strict(data[first + 1 : last]), b64url_decode_strict(data[last + 1 :])
    except (ValueError, binascii.Error) as exc:
        raise VerificationError(Reason.MALFORMED, "a segment is not canonical base64url") from exc
    return token[:first], data[:last], payload, signature


def _decode_header(segment: str) -> dict[str, Any]:
    try:
        header = json.loads(b64url_decode_strict(segment))
    # RecursionError: the header is read before the signature is checked, so anyone can send one nested 100,000 deep.
    except (ValueError, binascii.Error, RecursionError) as exc:
        raise VerificationError(Reason.MALFORMED, "a segment is not canonical base64url or JSON") from exc
    if not isinstance(header, dict):
        raise VerificationError(Reason.MALFORMED, "header is not a JSON object")
    if header.get("alg") != "EdDSA":
        raise VerificationError(Reason.UNSUPPORTED_ALGORITHM, f"alg {header.get('alg')!r} is not EdDSA")
    if "crit" in header:
        raise VerificationError(Reason.MALFORMED, "critical header parameters are not understood")
    return header


def _verified_claims(segments: tuple[str, bytes, bytes, bytes], key: Ed25519PublicKey) -> dict[str, Any]:
    _, signing_input, payload, signature = segments
    try:
        key.verify(signature, signing_input)
    except InvalidSignature as exc:
        raise VerificationError(Reason.BAD_SIGNATURE, "signature does not match") from exc
    try:
        claims = json.loads(payload.decode("utf-8"))  # a str skips json's encoding detection
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError included
        raise VerificationError(Reason.MALFORMED, "payload is not valid JSON") from exc
    if not isinstance(claims, dict):
        raise VerificationError(Reason.MALFORMED, "claims are not a JSON object")
    return claims


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)  # a tuple: faster than int | float


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()
