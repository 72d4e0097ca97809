"""The air-gapped file formats: activation requests, license files and usage reports (see docs/offline.md).

Pure: the standard library, ``cryptography`` and the verifier, nothing from the web or database stack, so the
install side, the edge and the ``verify`` command use it as they are.

Every file is rejected on any change to its text:

- an **activation request** and a **usage report** are canonical JSON (sorted keys, no spaces, ASCII) signed by the
  install key; text that is not exactly the canonical form of what it says is ``MALFORMED``, and changed content
  fails its signature;
- a **license file** is an armored JWS whose human-readable header lines are rebuilt from the signed claims on
  verification and compared, so edited header lines are refused although their values are never read.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from license_server import strict_json
from license_server.jose import b64url_decode_strict, b64url_encode, raw_public_bytes
from license_server.verifier import Reason, VerificationError, VerifiedDocument, Verifier

REQUEST_TYPE = "license-activation-request"
USAGE_REPORT_TYPE = "license-usage-report"
FORMAT_VERSION = 1
ARMOR_BEGIN = "-----BEGIN LICENSE FILE-----"
ARMOR_END = "-----END LICENSE FILE-----"
ARMOR_NOTICE = "Comment: Informational only; just the signed block below is verified."
# How far ahead of the local clock a license file's iat may be: air-gapped clocks drift, but not by this much.
FUTURE_TOLERANCE = timedelta(minutes=10)
# How old an activation request the vendor still answers: files move by hand, but a stale one is suspicious.
REQUEST_MAX_AGE = timedelta(days=30)
MAX_FILE_BYTES = 1024 * 1024
MAX_MEASUREMENTS = 10_000


class FileReason(StrEnum):
    """Why an activation request or a usage report is refused. Stable: scripts may depend on them."""

    MALFORMED = "MALFORMED"  # not the canonical JSON of a well-formed file
    BAD_SIGNATURE = "BAD_SIGNATURE"  # the install key's signature does not match: the file was changed
    REQUEST_EXPIRED = "REQUEST_EXPIRED"  # older than REQUEST_MAX_AGE
    REQUEST_FROM_FUTURE = "REQUEST_FROM_FUTURE"  # created after the vendor's now (beyond FUTURE_TOLERANCE)
    UNKNOWN_BINDING = "UNKNOWN_BINDING"  # no offline activation has this install key
    BINDING_MISMATCH = "BINDING_MISMATCH"  # the report names another license, activation or fingerprint
    USAGE_REPLAYED = "USAGE_REPLAYED"  # this link (or an older one) was already imported (the vendor: another report)
    USAGE_CHAIN_GAP = "USAGE_CHAIN_GAP"  # a link is missing before this one
    USAGE_CHAIN_BROKEN = "USAGE_CHAIN_BROKEN"  # the right sequence number, but it does not follow the last link
    USAGE_OUT_OF_ORDER = "USAGE_OUT_OF_ORDER"  # measurements are not in time order


class FileError(Exception):
    def __init__(self, reason: FileReason, detail: str, field: str | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.field = field
        super().__init__(f"{reason}: {detail}")


# -- canonical signed JSON ------------------------------------------------------------------------------------------
def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_time(value: object, field: str) -> datetime:
    if not isinstance(value, str):
        raise FileError(FileReason.MALFORMED, "must be an RFC 3339 timestamp", field)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise FileError(FileReason.MALFORMED, "must be an RFC 3339 timestamp", field) from exc
    if parsed.tzinfo is None:
        raise FileError(FileReason.MALFORMED, "must carry a UTC offset", field)
    return parsed.astimezone(UTC)


def _signed(body: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    return {**body, "signature": b64url_encode(key.sign(canonical_json(body)))}


def _load_signed(raw: str | bytes, expected_type: str) -> dict[str, Any]:
    """Parse a signed JSON file and insist its text is exactly the canonical form (a final newline aside)."""
    data = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else raw
    if len(data) > MAX_FILE_BYTES:
        raise FileError(FileReason.MALFORMED, f"larger than {MAX_FILE_BYTES} bytes")
    try:
        value = strict_json.loads(data)
    except strict_json.StrictJsonError as exc:
        raise FileError(FileReason.MALFORMED, str(exc)) from exc
    except ValueError as exc:  # UnicodeDecodeError included
        raise FileError(FileReason.MALFORMED, "not JSON") from exc
    if not isinstance(value, dict):
        raise FileError(FileReason.MALFORMED, "not a JSON object")
    if value.get("type") != expected_type:
        raise FileError(FileReason.MALFORMED, f"type is not {expected_type!r}", "type")
    if value.get("ver") != FORMAT_VERSION or isinstance(value.get("ver"), bool):
        raise FileError(FileReason.MALFORMED, f"ver must be {FORMAT_VERSION}", "ver")
    if data.rstrip(b"\n") != canonical_json(value) or data.endswith(b"\n\n"):
        raise FileError(FileReason.MALFORMED, "the text is not the canonical form of its content (was it edited?)")
    return value


def _public_key(value: object, field: str) -> Ed25519PublicKey:
    try:
        raw = b64url_decode_strict(value) if isinstance(value, str) else b""
        if len(raw) != 32:
            raise ValueError("not 32 bytes")
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, binascii.Error) as exc:
        raise FileError(FileReason.MALFORMED, "must be a base64url Ed25519 public key", field) from exc


def _check_signature(value: dict[str, Any], key: Ed25519PublicKey) -> None:
    body = {k: v for k, v in value.items() if k != "signature"}
    signature = value.get("signature")
    try:
        decoded = b64url_decode_strict(signature) if isinstance(signature, str) else b""
        key.verify(decoded, canonical_json(body))
    except (ValueError, binascii.Error, InvalidSignature) as exc:
        raise FileError(FileReason.BAD_SIGNATURE, "the install key's signature does not match", "signature") from exc


def _string(value: dict[str, Any], name: str, *, max_length: int, optional: bool = False) -> str | None:
    item = value.get(name)
    if item is None and optional:
        return None
    if not isinstance(item, str) or not item or len(item) > max_length:
        raise FileError(FileReason.MALFORMED, f"must be a string of 1-{max_length} characters", name)
    return item


def _count(value: object, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 10_000_000:
        raise FileError(FileReason.MALFORMED, "must be an integer 0-10000000", field)
    return value


def install_key_id(public_key: Ed25519PublicKey) -> str:
    """How files name an install key: its raw 32 bytes, base64url."""
    return b64url_encode(raw_public_bytes(public_key))


# -- activation requests ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ActivationRequest:
    license_key: str
    fingerprint: str
    hostname: str | None
    product_version: str | None
    install_key: str  # base64url raw public key
    nonce: str
    created_at: datetime


def build_activation_request(
    *,
    install_key: Ed25519PrivateKey,
    license_key: str,
    fingerprint: str,
    hostname: str | None,
    now: datetime,
    product_version: str | None = None,
) -> bytes:
    """The request file's bytes: canonical JSON, signed by the install key (proof that the install holds it)."""
    body: dict[str, Any] = {
        "type": REQUEST_TYPE,
        "ver": FORMAT_VERSION,
        "license_key": license_key,
        "fingerprint": fingerprint,
        "hostname": hostname,
        "product_version": product_version,
        "install_key": install_key_id(install_key.public_key()),
        "nonce": secrets.token_hex(16),
        "created_at": _iso(now),
    }
    return canonical_json(_signed(body, install_key)) + b"\n"


def parse_activation_request(raw: str | bytes, *, now: datetime) -> ActivationRequest:
    value = _load_signed(raw, REQUEST_TYPE)
    key = _public_key(value.get("install_key"), "install_key")
    _check_signature(value, key)
    created_at = _parse_time(value.get("created_at"), "created_at")
    if created_at > now + FUTURE_TOLERANCE:
        raise FileError(FileReason.REQUEST_FROM_FUTURE, "the request was created in the future", "created_at")
    if now - created_at > REQUEST_MAX_AGE:
        raise FileError(
            FileReason.REQUEST_EXPIRED, f"older than {REQUEST_MAX_AGE.days} days; make a new request", "created_at"
        )
    return ActivationRequest(
        license_key=str(_string(value, "license_key", max_length=128)),
        fingerprint=str(_string(value, "fingerprint", max_length=256)),
        hostname=_string(value, "hostname", max_length=255, optional=True),
        product_version=_string(value, "product_version", max_length=64, optional=True),
        install_key=str(value["install_key"]),
        nonce=str(_string(value, "nonce", max_length=128)),
        created_at=created_at,
    )


# -- license files --------------------------------------------------------------------------------------------------
class Binding(NamedTuple):
    """What a license file is bound to: the install that asked for it."""

    activation_id: str
    fingerprint: str
    install_key: str


class LicenseFile(NamedTuple):
    token: str
    document: VerifiedDocument
    binding: Binding

    @property
    def claims(self) -> dict[str, Any]:
        return self.document.claims


def armor(token: str, claims: dict[str, Any]) -> str:
    """The license file's text: informational header lines, a blank line, the JWS wrapped at 64 characters."""
    body = [token[i : i + ARMOR_WIDTH] for i in range(0, len(token), ARMOR_WIDTH)]
    return "\n".join([ARMOR_BEGIN, *_armor_headers(claims), "", *body, ARMOR_END]) + "\n"


ARMOR_WIDTH = 64


def _armor_headers(claims: dict[str, Any]) -> list[str]:
    customer = claims.get("customer")
    binding = claims.get("binding")
    return [
        ARMOR_NOTICE,
        f"Customer: {_header_value(customer.get('name') if isinstance(customer, dict) else None)}",
        f"License-Id: {_header_value(claims.get('license_id'))}",
        f"Expires: {_header_value(claims.get('expires_at'))}",
        f"Fingerprint: {_header_value(binding.get('fingerprint') if isinstance(binding, dict) else None)}",
    ]


def _header_value(value: object) -> str:
    # Header lines are one line each and ASCII, whatever the claim holds.
    text = str(value)[:200] if value is not None else "-"
    if text.isascii() and text.isprintable():
        return text
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)


def dearmor(text: str | bytes) -> str:
    """The JWS inside a license file (its header lines are checked against the claims after verification)."""
    return _dearmor(text)[1]


def _dearmor(text: str | bytes) -> tuple[str, str]:
    """(the header lines' text, the JWS). The body must be wrapped exactly as ``armor`` wraps it.

    String slicing rather than a list of lines: this is on the hot path of offline verification.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError as exc:
            raise VerificationError(Reason.MALFORMED, "a license file is ASCII text") from exc
    if len(text) > MAX_FILE_BYTES:
        raise VerificationError(Reason.MALFORMED, f"larger than {MAX_FILE_BYTES} bytes")
    text = _normalised(text)
    if not text.startswith(ARMOR_BEGIN + "\n"):
        raise VerificationError(Reason.MALFORMED, f"the file does not start with {ARMOR_BEGIN}")
    if not text.endswith("\n" + ARMOR_END):
        raise VerificationError(Reason.MALFORMED, f"the file does not end with {ARMOR_END} (truncated?)")
    blank = text.find("\n\n")
    if blank < 0:
        raise VerificationError(Reason.MALFORMED, "no blank line after the header lines")
    body = text[blank + 2 : len(text) - len(ARMOR_END) - 1]
    token = body.replace("\n", "")
    lines = len(body) - len(token) + 1
    full = (len(token) - 1) // ARMOR_WIDTH  # lines before the last one, all exactly ARMOR_WIDTH long
    if not token or lines != full + 1 or body[ARMOR_WIDTH :: ARMOR_WIDTH + 1] != "\n" * full:
        raise VerificationError(Reason.MALFORMED, f"the signed block is not wrapped at {ARMOR_WIDTH} characters")
    return text[len(ARMOR_BEGIN) + 1 : blank], token


def _normalised(text: str) -> str:
    """Uniform CRLF line endings (a file that went through Windows) read as LF; trailing whitespace is dropped."""
    if "\r" in text and text.count("\r\n") == text.count("\n"):
        text = text.replace("\r\n", "\n")
    return text.rstrip(" \t\n")


def verify_license_file(
    text: str | bytes,
    verifier: Verifier,
    *,
    fingerprint: str | None = None,
    install_key: str | None = None,
    check_dates: bool = True,
) -> LicenseFile:
    """Verify a license file. Reasons, in order: the verifier's (MALFORMED ... UNSUPPORTED_VERSION), then
    NOT_A_LICENSE_FILE, FINGERPRINT_MISMATCH, INSTALL_KEY_MISMATCH, ISSUED_IN_FUTURE, NOT_YET_VALID,
    DOCUMENT_EXPIRED. ``check_dates=False`` skips the last three, for callers that judge time themselves."""
    headers, token = _dearmor(text)
    document = verifier.verify_authentic(token)
    claims = document.claims
    raw_binding = claims.get("binding")
    if not isinstance(raw_binding, dict):
        raise VerificationError(Reason.NOT_A_LICENSE_FILE, "the document is not bound to an install")
    bound_activation, bound_fingerprint, bound_key = (
        raw_binding.get("activation_id"),
        raw_binding.get("fingerprint"),
        raw_binding.get("install_key"),
    )
    if not (isinstance(bound_activation, str) and isinstance(bound_fingerprint, str) and isinstance(bound_key, str)):
        raise VerificationError(Reason.NOT_A_LICENSE_FILE, "the document's binding is incomplete")
    binding = Binding(bound_activation, bound_fingerprint, bound_key)
    if headers != "\n".join(_armor_headers(claims)):
        raise VerificationError(Reason.MALFORMED, "the header lines differ from the signed claims (edited?)")
    if fingerprint is not None and binding.fingerprint != fingerprint:
        raise VerificationError(Reason.FINGERPRINT_MISMATCH, "the file is bound to another machine's fingerprint")
    if install_key is not None and binding.install_key != install_key:
        raise VerificationError(Reason.INSTALL_KEY_MISMATCH, "the file is bound to another install key")
    if check_dates:
        now = verifier.clock().timestamp()
        iat = claims.get("iat")
        if not isinstance(iat, (int, float)) or isinstance(iat, bool):  # a tuple: faster than int | float
            raise VerificationError(Reason.MALFORMED, "'iat' must be a numeric date")
        if iat > now + _FUTURE_TOLERANCE_SECONDS:
            raise VerificationError(Reason.ISSUED_IN_FUTURE, "issued after this machine's clock (clock wrong?)")
        verifier.check_dates(claims, at=now)
    return LicenseFile(token, document, binding)


_FUTURE_TOLERANCE_SECONDS = FUTURE_TOLERANCE.total_seconds()


# -- usage reports --------------------------------------------------------------------------------------------------
def genesis_hash(install_key: str) -> str:
    """The ``prev`` of an install's first report: ties the chain to its install key."""
    return hashlib.sha256(b"license-usage-chain v1\n" + install_key.encode()).hexdigest()


@dataclass(frozen=True)
class Measurement:
    measured_at: datetime
    idempotency_key: str
    seats_used: int
    workspaces: tuple[tuple[str, int], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "measured_at": _iso(self.measured_at),
            "idempotency_key": self.idempotency_key,
            "seats_used": self.seats_used,
            "workspaces": [{"id": wid, "members": members} for wid, members in self.workspaces],
        }


@dataclass(frozen=True)
class UsageReportFile:
    license_id: str
    activation_id: str
    fingerprint: str
    install_key: str
    seq: int
    prev: str
    created_at: datetime
    measurements: tuple[Measurement, ...]
    hash: str


def build_usage_report(
    *,
    install_key: Ed25519PrivateKey,
    binding: Binding,
    license_id: str,
    seq: int,
    prev: str,
    measurements: list[Measurement],
    now: datetime,
) -> bytes:
    body: dict[str, Any] = {
        "type": USAGE_REPORT_TYPE,
        "ver": FORMAT_VERSION,
        "license_id": license_id,
        "activation_id": binding.activation_id,
        "fingerprint": binding.fingerprint,
        "install_key": binding.install_key,
        "seq": seq,
        "prev": prev,
        "created_at": _iso(now),
        "measurements": [m.to_json() for m in measurements],
    }
    return canonical_json(_signed(body, install_key)) + b"\n"


def report_hash(raw: str | bytes) -> str:
    """A report's link hash: SHA-256 of its canonical text, signature included."""
    value = _load_signed(raw, USAGE_REPORT_TYPE)
    return hashlib.sha256(canonical_json(value)).hexdigest()


def parse_usage_report(raw: str | bytes) -> UsageReportFile:
    """Parse and check a report against the install key it names (the importer then checks that key is bound)."""
    value = _load_signed(raw, USAGE_REPORT_TYPE)
    key = _public_key(value.get("install_key"), "install_key")
    _check_signature(value, key)
    seq = value.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise FileError(FileReason.MALFORMED, "must be an integer >= 1", "seq")
    prev = value.get("prev")
    if not isinstance(prev, str) or len(prev) != 64 or any(c not in "0123456789abcdef" for c in prev):
        raise FileError(FileReason.MALFORMED, "must be 64 lowercase hex digits", "prev")
    raw_measurements = value.get("measurements")
    if not isinstance(raw_measurements, list) or len(raw_measurements) > MAX_MEASUREMENTS:
        raise FileError(FileReason.MALFORMED, f"must be a list of at most {MAX_MEASUREMENTS}", "measurements")
    measurements = tuple(_measurement(item, i) for i, item in enumerate(raw_measurements))
    for i in range(1, len(measurements)):
        if measurements[i].measured_at < measurements[i - 1].measured_at:
            raise FileError(FileReason.USAGE_OUT_OF_ORDER, "measurements are not in time order", f"measurements.{i}")
    return UsageReportFile(
        license_id=str(_string(value, "license_id", max_length=64)),
        activation_id=str(_string(value, "activation_id", max_length=64)),
        fingerprint=str(_string(value, "fingerprint", max_length=256)),
        install_key=str(value["install_key"]),
        seq=seq,
        prev=prev,
        created_at=_parse_time(value.get("created_at"), "created_at"),
        measurements=measurements,
        hash=hashlib.sha256(canonical_json(value)).hexdigest(),
    )


def _measurement(item: object, index: int) -> Measurement:
    field = f"measurements.{index}"
    if not isinstance(item, dict):
        raise FileError(FileReason.MALFORMED, "must be an object", field)
    key = _string(item, "idempotency_key", max_length=128)
    workspaces = item.get("workspaces")
    if not isinstance(workspaces, list) or len(workspaces) > 10_000:
        raise FileError(FileReason.MALFORMED, "must be a list of at most 10000", f"{field}.workspaces")
    parsed: list[tuple[str, int]] = []
    for j, workspace in enumerate(workspaces):
        if not isinstance(workspace, dict):
            raise FileError(FileReason.MALFORMED, "must be an object", f"{field}.workspaces.{j}")
        wid = _string(workspace, "id", max_length=128)
        parsed.append((str(wid), _count(workspace.get("members"), f"{field}.workspaces.{j}.members")))
    return Measurement(
        measured_at=_parse_time(item.get("measured_at"), f"{field}.measured_at"),
        idempotency_key=str(key),
        seats_used=_count(item.get("seats_used"), f"{field}.seats_used"),
        workspaces=tuple(parsed),
    )


def check_next_link(report: UsageReportFile, *, last_seq: int, last_hash: str) -> None:
    """Does ``report`` extend a chain whose newest imported link is (last_seq, last_hash)? Raises the reason if not.

    The first report of an install has seq 1 and ``prev`` = genesis_hash(install key); pass last_seq 0 and that
    genesis hash as last_hash.
    """
    if report.seq <= last_seq:
        detail = "this report was already imported" if report.seq == last_seq else "an older report"
        raise FileError(FileReason.USAGE_REPLAYED, f"{detail} (seq {report.seq}; imported up to {last_seq})", "seq")
    if report.seq > last_seq + 1:
        raise FileError(
            FileReason.USAGE_CHAIN_GAP,
            f"report {last_seq + 1} is missing; import it first"
            if report.seq == last_seq + 2
            else f"reports {last_seq + 1} to {report.seq - 1} are missing; import them first",
            "seq",
        )
    if report.prev != last_hash:
        raise FileError(FileReason.USAGE_CHAIN_BROKEN, "does not follow the last imported report", "prev")
