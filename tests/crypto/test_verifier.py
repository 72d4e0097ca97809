"""The offline verifier: round trips, tampering, forged algorithms, certificates, time, rotation and revocation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections import Counter
from datetime import timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from license_server.jose import LICENSE_DOCUMENT_TYPE, b64url_encode
from license_server.signing.keys import KeyStore
from license_server.signing.service import Signer
from license_server.verifier import Reason, VerificationError, Verifier, load_root_public_key
from tests.crypto.conftest import NOW, fixed_clock, make_claims
from tests.keyring import retire, root_private_key, rotate

B64URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# Bytes that can never appear in a JWS compact serialization, or only as the separator.
OUTSIDE_ALPHABET = [b".", b"=", b"+", b"/", b" ", b"\n", b"\x00", b"~", b"\x80", b"\xff"]


def _json_segment(value: object) -> str:
    return b64url_encode(json.dumps(value, separators=(",", ":")).encode())


def _compact(header: dict[str, Any], claims: dict[str, Any], key: Ed25519PrivateKey) -> str:
    """A hand-built EdDSA JWS, so headers can say things our Signer never would."""
    signing_input = f"{_json_segment(header)}.{_json_segment(claims)}"
    return f"{signing_input}.{b64url_encode(key.sign(signing_input.encode()))}"


def _signer_private(store: KeyStore, kid: str | None = None) -> Ed25519PrivateKey:
    keyring = store.load()
    key = keyring.keys[kid or keyring.signer_kid].private_key
    assert key is not None
    return key


def _x5c(store: KeyStore, kid: str | None = None) -> list[str]:
    keyring = store.load()
    return [base64.b64encode(keyring.keys[kid or keyring.signer_kid].certificate_der).decode()]


def _reason(verifier: Verifier, token: str | bytes) -> Reason:
    with pytest.raises(VerificationError) as caught:
        verifier.verify(token)
    return caught.value.reason


# -- round trip ---------------------------------------------------------------------------------------------------
def test_signed_document_round_trips_to_the_same_claims_and_kid(
    signer: Signer, verifier: Verifier, claims: dict[str, Any]
) -> None:
    token = signer.sign(claims)
    document = verifier.verify(token)
    assert document.claims == claims
    assert document.kid == signer.keyring().signer_kid
    assert document.header["typ"] == LICENSE_DOCUMENT_TYPE
    assert document.header["alg"] == "EdDSA"
    assert verifier.verify(token.encode()).claims == claims


def test_verifier_trusts_only_the_pinned_root_not_the_header(
    signer: Signer, other_store: KeyStore, claims: dict[str, Any]
) -> None:
    """A verifier pinning another root refuses documents whose certificate that root did not sign."""
    foreign = Verifier(other_store.root_public_key(), clock=fixed_clock(NOW))
    assert _reason(foreign, signer.sign(claims)) is Reason.UNCERTIFIED_KEY


# -- tampering ----------------------------------------------------------------------------------------------------
# A tampered x5c may hold a certificate with a non-positive serial, which cryptography warns about while parsing.
@pytest.mark.filterwarnings("ignore:Parsed a serial number:cryptography.utils.CryptographyDeprecationWarning")
def test_every_single_byte_change_of_a_document_fails_verification(
    signer: Signer, verifier: Verifier, claims: dict[str, Any]
) -> None:
    original = signer.sign(claims).encode()
    assert verifier.verify(original).claims == claims
    reasons: Counter[Reason] = Counter()
    tried = 0
    for position, byte in enumerate(original):
        index = B64URL_ALPHABET.find(bytes([byte]))
        # Two in-alphabet neighbours: one flips the lowest bit (catches non-canonical trailing bits),
        # one flips the highest bit of the 6-bit value.
        inside = [
            B64URL_ALPHABET[(index ^ 1) if index >= 0 else position % 64],
            B64URL_ALPHABET[(index ^ 32) if index >= 0 else (position + 32) % 64],
        ]
        replacements = {bytes([value]) for value in inside} | set(OUTSIDE_ALPHABET)
        replacements.discard(bytes([byte]))
        for replacement in sorted(replacements):
            tampered = original[:position] + replacement + original[position + 1 :]
            assert tampered != original
            with pytest.raises(VerificationError) as caught:
                verifier.verify(tampered)
            reasons[caught.value.reason] += 1
            tried += 1
    # Every position got at least two in-alphabet and nine outside replacements.
    assert tried >= len(original) * (2 + len(OUTSIDE_ALPHABET) - 1)
    assert reasons[Reason.MALFORMED] > 0
    assert reasons[Reason.BAD_SIGNATURE] > 0
    print(f"single-byte tamper cases tried: {tried} over {len(original)} bytes; reasons: {dict(reasons)}")


def test_signature_with_non_canonical_trailing_bits_is_malformed(
    signer: Signer, verifier: Verifier, claims: dict[str, Any]
) -> None:
    """An Ed25519 signature (64 bytes) ends in a character with 4 unused bits; setting them must not pass."""
    token = signer.sign(claims)
    last = B64URL_ALPHABET.index(token[-1].encode())
    assert last & 0b1111 == 0
    for low_bits in range(1, 16):
        changed = token[:-1] + chr(B64URL_ALPHABET[last | low_bits])
        assert base64.urlsafe_b64decode(changed.split(".")[2] + "==") == base64.urlsafe_b64decode(
            token.split(".")[2] + "=="
        )  # a lenient decoder would see the very same signature
        assert _reason(verifier, changed) is Reason.MALFORMED


def test_claims_changed_and_resigned_by_another_key_fail(
    store: KeyStore, signer: Signer, verifier: Verifier, claims: dict[str, Any]
) -> None:
    """Keeping the real kid and certificate but signing with another key is BAD_SIGNATURE."""
    header = {"alg": "EdDSA", "typ": LICENSE_DOCUMENT_TYPE, "kid": store.load().signer_kid, "x5c": _x5c(store)}
    forged = _compact(header, {**claims, "max_activations": 10_000}, Ed25519PrivateKey.generate())
    assert _reason(verifier, forged) is Reason.BAD_SIGNATURE


def test_swapping_the_payload_of_two_genuine_documents_fails(
    signer: Signer, verifier: Verifier, claims: dict[str, Any]
) -> None:
    first = signer.sign(claims).split(".")
    second = signer.sign({**claims, "max_activations": 999}).split(".")
    assert _reason(verifier, ".".join([first[0], second[1], first[2]])) is Reason.BAD_SIGNATURE


def test_a_header_nested_100000_deep_is_malformed_not_a_crash(verifier: Verifier, claims: dict[str, Any]) -> None:
    """The header is parsed before any signature check, so anyone can hand a verifier (the edge, the client, `verify`)
    one; it was a RecursionError escaping the verifier."""
    deep_header = b64url_encode(b"[" * 100_000 + b"]" * 100_000)
    token = f"{deep_header}.{_json_segment(claims)}.{b64url_encode(b'x' * 64)}"
    assert _reason(verifier, token) is Reason.MALFORMED


# -- forged algorithms --------------------------------------------------------------------------------------------
def test_alg_none_unsecured_document_is_refused_as_malformed(
    store: KeyStore, verifier: Verifier, claims: dict[str, Any]
) -> None:
    """The RFC 7515 unsecured form (empty signature) is not a document this verifier accepts."""
    header = {"alg": "none", "typ": LICENSE_DOCUMENT_TYPE, "kid": store.load().signer_kid, "x5c": _x5c(store)}
    token = f"{_json_segment(header)}.{_json_segment(claims)}."
    assert _reason(verifier, token) is Reason.MALFORMED


def test_alg_none_with_a_signature_segment_is_refused_as_unsupported_algorithm(
    store: KeyStore, signer: Signer, verifier: Verifier, claims: dict[str, Any]
) -> None:
    genuine_signature = signer.sign(claims).split(".")[2]
    for alg in ("none", "None", "NONE", "EdDSA ", "eddsa", "ES256", "RS256"):
        header = {"alg": alg, "typ": LICENSE_DOCUMENT_TYPE, "kid": store.load().signer_kid, "x5c": _x5c(store)}
        token = f"{_json_segment(header)}.{_json_segment(claims)}.{genuine_signature}"
        assert _reason(verifier, token) is Reason.UNSUPPORTED_ALGORITHM, alg


def test_alg_missing_is_refused_as_unsupported_algorithm(
    store: KeyStore, verifier: Verifier, claims: dict[str, Any]
) -> None:
    header = {"typ": LICENSE_DOCUMENT_TYPE, "kid": store.load().signer_kid, "x5c": _x5c(store)}
    assert _reason(verifier, _compact(header, claims, _signer_private(store))) is Reason.UNSUPPORTED_ALGORITHM


@pytest.mark.parametrize("secret_form", ["raw", "pem", "der", "jwk-x"])
@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_hmac_document_keyed_with_the_issuing_public_key_is_refused(
    store: KeyStore, verifier: Verifier, claims: dict[str, Any], secret_form: str, alg: str
) -> None:
    """The classic algorithm-confusion forgery: HMAC with the (public!) issuing key as the secret."""
    issuing = store.load().signer
    public = issuing.public_key
    secret = {
        "raw": public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
        "pem": public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        "der": public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        "jwk-x": str(issuing.jwk()["x"]).encode(),
    }[secret_form]
    header = {"alg": alg, "typ": LICENSE_DOCUMENT_TYPE, "kid": issuing.kid, "x5c": _x5c(store)}
    signing_input = f"{_json_segment(header)}.{_json_segment({**claims, 'max_activations': 10_000})}"
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    mac = hmac.new(secret, signing_input.encode(), digest).digest()
    assert _reason(verifier, f"{signing_input}.{b64url_encode(mac)}") is Reason.UNSUPPORTED_ALGORITHM


# -- keys and certificates ----------------------------------------------------------------------------------------
def test_unknown_kid_without_certificate_is_refused_as_unknown_key(
    store: KeyStore, verifier: Verifier, claims: dict[str, Any]
) -> None:
    header = {"alg": "EdDSA", "typ": LICENSE_DOCUMENT_TYPE, "kid": "no-such-key-id"}
    assert _reason(verifier, _compact(header, claims, _signer_private(store))) is Reason.UNKNOWN_KEY


@pytest.mark.parametrize("x5c", [None, [], [None], "not-a-list", [123]])
def test_known_kid_with_missing_or_empty_x5c_is_refused_as_unknown_key(
    store: KeyStore, verifier: Verifier, claims: dict[str, Any], x5c: object
) -> None:
    header: dict[str, Any] = {"alg": "EdDSA", "typ": LICENSE_DOCUMENT_TYPE, "kid": store.load().signer_kid}
    if x5c is not None:
        header["x5c"] = x5c
    assert _reason(verifier, _compact(header, claims, _signer_private(store))) is Reason.UNKNOWN_KEY


@pytest.mark.parametrize("x5c", ["!!not base64!!", base64.b64encode(b"not a certificate").decode()])
def test_x5c_that_is_not_a_certificate_is_refused_as_uncertified_key(
    store: KeyStore, verifier: Verifier, claims: dict[str, Any], x5c: str
) -> None:
    header = {"alg": "EdDSA", "typ": LICENSE_DOCUMENT_TYPE, "kid": store.load().signer_kid, "x5c": [x5c]}
    assert _reason(verifier, _compact(header, claims, _signer_private(store))) is Reason.UNCERTIFIED_KEY


@pytest.mark.parametrize("kid", [None, "", 42])
def test_missing_or_non_string_kid_is_malformed(
    store: KeyStore, verifier: Verifier, claims: dict[str, Any], kid: object
) -> None:
    header: dict[str, Any] = {"alg": "EdDSA", "typ": LICENSE_DOCUMENT_TYPE, "x5c": _x5c(store)}
    if kid is not None:
        header["kid"] = kid
    assert _reason(verifier, _compact(header, claims, _signer_private(store))) is Reason.MALFORMED


def test_certificate_signed_by_a_different_root_is_refused_as_uncertified_key(
    other_store: KeyStore, verifier: Verifier, claims: dict[str, Any]
) -> None:
    foreign = Signer(other_store, refresh_seconds=0).sign(claims)
    assert _reason(verifier, foreign) is Reason.UNCERTIFIED_KEY


def test_x5c_certificate_for_a_different_key_than_the_kid_is_refused_as_uncertified_key(
    store: KeyStore, verifier: Verifier, claims: dict[str, Any]
) -> None:
    """Both keys are root-certified, but the certificate in the header is not the one of the named kid."""
    first = store.load().signer_kid
    second = rotate(store)
    for signing_kid, header_kid, cert_kid in [(first, first, second), (second, second, first), (first, second, first)]:
        header = {"alg": "EdDSA", "typ": LICENSE_DOCUMENT_TYPE, "kid": header_kid, "x5c": _x5c(store, cert_kid)}
        token = _compact(header, claims, _signer_private(store, signing_kid))
        assert _reason(verifier, token) is Reason.UNCERTIFIED_KEY, (signing_kid, header_kid, cert_kid)


def test_document_signed_by_the_root_key_itself_is_refused(
    store: KeyStore, verifier: Verifier, claims: dict[str, Any]
) -> None:
    """The root only certifies issuing keys; it has no certificate of its own and cannot sign documents."""
    root = root_private_key(store)
    assert isinstance(root, Ed25519PrivateKey)
    keyring = store.load()
    header: dict[str, Any] = {"alg": "EdDSA", "typ": LICENSE_DOCUMENT_TYPE, "kid": keyring.root_kid}
    assert _reason(verifier, _compact(header, claims, root)) is Reason.UNKNOWN_KEY
    header["x5c"] = _x5c(store)
    assert _reason(verifier, _compact(header, claims, root)) is Reason.UNCERTIFIED_KEY


# -- type, version and time ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("typ", ["JWT", "license+JWT", "key-revocations+jwt", ""])
def test_wrong_typ_is_refused_as_wrong_type(
    signer: Signer, verifier: Verifier, claims: dict[str, Any], typ: str
) -> None:
    assert _reason(verifier, signer.sign(claims, typ=typ)) is Reason.WRONG_TYPE


def test_missing_typ_is_refused_as_wrong_type(store: KeyStore, verifier: Verifier, claims: dict[str, Any]) -> None:
    header = {"alg": "EdDSA", "kid": store.load().signer_kid, "x5c": _x5c(store)}
    assert _reason(verifier, _compact(header, claims, _signer_private(store))) is Reason.WRONG_TYPE


def test_revocation_list_presented_as_a_license_is_refused_as_unknown_key(store: KeyStore, verifier: Verifier) -> None:
    """Documented order: the key is checked before typ, so a root-signed list (no x5c) reports UNKNOWN_KEY."""
    revocations = (store.keys_dir / "revocations.jws").read_text().strip()
    assert _reason(verifier, revocations) is Reason.UNKNOWN_KEY


def test_wrong_typ_from_a_retired_or_uncertified_key_reports_the_key_problem(
    store: KeyStore, other_store: KeyStore, signer: Signer, verifier: Verifier, claims: dict[str, Any]
) -> None:
    """docs/license-document.md: typ is checked only once the key is certified."""
    old_kid = signer.keyring().signer_kid
    old_wrong_typ = signer.sign(claims, typ="JWT")
    rotate(store)
    retire(store, old_kid)
    revoking = verifier.with_revocations((store.keys_dir / "revocations.jws").read_text())
    assert _reason(revoking, old_wrong_typ) is Reason.KEY_RETIRED
    assert _reason(verifier, old_wrong_typ) is Reason.WRONG_TYPE
    foreign = Signer(other_store, refresh_seconds=0).sign(claims, typ="JWT")
    assert _reason(verifier, foreign) is Reason.UNCERTIFIED_KEY


def test_verifier_with_another_expected_type_accepts_that_type_only(
    store: KeyStore, signer: Signer, claims: dict[str, Any]
) -> None:
    verifier = Verifier(store.root_public_key(), clock=fixed_clock(NOW), expected_type="other+jwt")
    assert verifier.verify(signer.sign(claims, typ="other+jwt")).claims == claims
    assert _reason(verifier, signer.sign(claims)) is Reason.WRONG_TYPE


@pytest.mark.parametrize("version", [0, 2, "1", None, [1], 1.5])
def test_unsupported_schema_version_is_refused(
    signer: Signer, verifier: Verifier, claims: dict[str, Any], version: object
) -> None:
    assert _reason(verifier, signer.sign({**claims, "ver": version})) is Reason.UNSUPPORTED_VERSION


def test_missing_schema_version_is_refused_as_unsupported_version(
    signer: Signer, verifier: Verifier, claims: dict[str, Any]
) -> None:
    del claims["ver"]
    assert _reason(verifier, signer.sign(claims)) is Reason.UNSUPPORTED_VERSION


@pytest.mark.parametrize("claim", ["nbf", "exp"])
@pytest.mark.parametrize("value", [None, "2031-03-14T00:00:00Z", True])
def test_missing_or_non_numeric_validity_dates_are_malformed(
    signer: Signer, verifier: Verifier, claims: dict[str, Any], claim: str, value: object
) -> None:
    if value is None:
        del claims[claim]
    else:
        claims[claim] = value
    assert _reason(verifier, signer.sign(claims)) is Reason.MALFORMED


def test_expired_document_is_refused_after_the_leeway(store: KeyStore, signer: Signer) -> None:
    claims = make_claims(ttl=timedelta(hours=1))
    token = signer.sign(claims)
    leeway = timedelta(seconds=60)
    expiry = NOW + timedelta(hours=1)
    root = store.root_public_key()
    last_valid = Verifier(root, clock=fixed_clock(expiry + leeway - timedelta(seconds=1)), leeway=leeway)
    assert last_valid.verify(token).claims == claims
    for moment in (expiry + leeway, expiry + timedelta(days=400)):
        assert _reason(Verifier(root, clock=fixed_clock(moment), leeway=leeway), token) is Reason.DOCUMENT_EXPIRED


def test_not_yet_valid_document_is_refused_before_the_leeway(store: KeyStore, signer: Signer) -> None:
    claims = make_claims(now=NOW + timedelta(days=1))
    token = signer.sign(claims)
    root = store.root_public_key()
    assert _reason(Verifier(root, clock=fixed_clock(NOW)), token) is Reason.NOT_YET_VALID
    start = NOW + timedelta(days=1)
    just_before = fixed_clock(start - timedelta(seconds=61))
    assert _reason(Verifier(root, clock=just_before), token) is Reason.NOT_YET_VALID
    assert Verifier(root, clock=fixed_clock(start - timedelta(seconds=60))).verify(token).claims == claims


# -- malformed input ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "garbage",
        "a.b",
        "a.b.c.d",
        "..",
        "a..c",
        ".b.c",
        "a.b.",
        "eyJhbGciOiJFZERTQSJ9.e30",
        "eyJhbGciOiJFZERTQSJ9.e30.====",
        "e30=.e30.e30",
        "W10.e30.e30",
        "bnVsbA.e30.e30",
        "IjEi.e30.e30",
        "e30.e30.e30",
        "not json.e30.e30",
        "ey!.e30.e30",
        "é.e30.e30",
        "\x00.\x00.\x00",
        " e30.e30.e30",
        "e30.e30.e30 ",
        "e30\n.e30.e30",
    ],
)
def test_garbage_input_is_refused_as_malformed(verifier: Verifier, garbage: str) -> None:
    reason = _reason(verifier, garbage)
    # "e30" is "{}": a header without alg is a well-formed JWS with an unsupported algorithm.
    expected = Reason.UNSUPPORTED_ALGORITHM if garbage == "e30.e30.e30" else Reason.MALFORMED
    assert reason is expected


@pytest.mark.parametrize("garbage", [b"\xff\xfe", b"e30.e30.\xe9", "é".encode()])
def test_non_ascii_bytes_are_refused_as_malformed(verifier: Verifier, garbage: bytes) -> None:
    assert _reason(verifier, garbage) is Reason.MALFORMED


def test_payload_that_is_not_a_json_object_is_malformed(store: KeyStore, verifier: Verifier) -> None:
    header = {"alg": "EdDSA", "typ": LICENSE_DOCUMENT_TYPE, "kid": store.load().signer_kid, "x5c": _x5c(store)}
    key = _signer_private(store)
    for payload in (b"[1, 2]", b"not json", b"\xff\xfe"):
        signing_input = f"{_json_segment(header)}.{b64url_encode(payload)}"
        token = f"{signing_input}.{b64url_encode(key.sign(signing_input.encode()))}"
        assert _reason(verifier, token) is Reason.MALFORMED, payload


def test_critical_header_parameters_are_refused_as_malformed(
    store: KeyStore, verifier: Verifier, claims: dict[str, Any]
) -> None:
    header = {
        "alg": "EdDSA",
        "typ": LICENSE_DOCUMENT_TYPE,
        "kid": store.load().signer_kid,
        "x5c": _x5c(store),
        "crit": ["exp"],
        "exp": 0,
    }
    assert _reason(verifier, _compact(header, claims, _signer_private(store))) is Reason.MALFORMED


# -- rotation and revocation --------------------------------------------------------------------------------------
def test_old_document_still_verifies_after_rotation_and_new_ones_carry_the_new_kid(
    store: KeyStore, signer: Signer, verifier: Verifier, claims: dict[str, Any]
) -> None:
    old_kid = signer.keyring().signer_kid
    old_token = signer.sign(claims)
    new_kid = rotate(store)
    new_token = signer.sign(claims)
    assert jwt.get_unverified_header(new_token)["kid"] == new_kid != old_kid
    assert verifier.verify(old_token).kid == old_kid
    assert verifier.verify(new_token).kid == new_kid
    # A verifier built only from root.pub, after the fact, accepts both as well.
    pinned = Verifier(load_root_public_key(store.keys_dir / "root.pub"), clock=fixed_clock(NOW))
    assert pinned.verify(old_token).claims == pinned.verify(new_token).claims == claims


def test_retired_key_documents_are_refused_with_the_revocation_list(
    store: KeyStore, signer: Signer, verifier: Verifier, claims: dict[str, Any]
) -> None:
    old_kid = signer.keyring().signer_kid
    old_token = signer.sign(claims)
    rotate(store)
    new_token = signer.sign(claims)
    retire(store, old_kid)
    revoking = verifier.with_revocations((store.keys_dir / "revocations.jws").read_text())
    assert revoking.retired_kids == frozenset({old_kid})
    assert _reason(revoking, old_token) is Reason.KEY_RETIRED
    assert revoking.verify(new_token).claims == claims
    assert revoking.clock is verifier.clock
    assert revoking.leeway == verifier.leeway
    # The revocation list served by the keyring is the same file.
    assert _reason(verifier.with_revocations(store.load().revocations or ""), old_token) is Reason.KEY_RETIRED
    # Without the list, an offline verifier cannot know: the old document still verifies.
    assert verifier.verify(old_token).kid == old_kid


def test_revocation_lists_accumulate(
    store: KeyStore, signer: Signer, verifier: Verifier, claims: dict[str, Any]
) -> None:
    tokens = [signer.sign(claims)]
    kids = [signer.keyring().signer_kid]
    for _ in range(2):
        kids.append(rotate(store))
        tokens.append(signer.sign(claims))
    retire(store, kids[0])
    retire(store, kids[1])
    revoking = verifier.with_revocations((store.keys_dir / "revocations.jws").read_text())
    assert [_reason(revoking, token) for token in tokens[:2]] == [Reason.KEY_RETIRED] * 2
    assert revoking.verify(tokens[2]).kid == kids[2]


def test_revocation_list_signed_by_a_different_root_is_refused(
    store: KeyStore, other_store: KeyStore, verifier: Verifier
) -> None:
    foreign_kid = other_store.load().signer_kid
    rotate(other_store)
    retire(other_store, foreign_kid)
    foreign_list = (other_store.keys_dir / "revocations.jws").read_text()
    with pytest.raises(VerificationError) as caught:
        verifier.with_revocations(foreign_list)
    assert caught.value.reason is Reason.BAD_SIGNATURE


def test_revocation_list_forged_with_an_issuing_key_is_refused(store: KeyStore, verifier: Verifier) -> None:
    """Only the root may retire keys: an issuing key signing a revocation list is not enough."""
    forged = _compact(
        {"alg": "EdDSA", "typ": "key-revocations+jwt"}, {"iat": 0, "retired": [{"kid": "x"}]}, _signer_private(store)
    )
    with pytest.raises(VerificationError) as caught:
        verifier.with_revocations(forged)
    assert caught.value.reason is Reason.BAD_SIGNATURE


def test_license_document_is_not_accepted_as_a_revocation_list(
    signer: Signer, verifier: Verifier, claims: dict[str, Any]
) -> None:
    with pytest.raises(VerificationError) as caught:
        verifier.with_revocations(signer.sign(claims))
    assert caught.value.reason is Reason.WRONG_TYPE


def test_tampered_revocation_list_is_refused(store: KeyStore, signer: Signer, verifier: Verifier) -> None:
    old_kid = signer.keyring().signer_kid
    rotate(store)
    retire(store, old_kid)
    header, _payload, signature = (store.keys_dir / "revocations.jws").read_text().strip().split(".")
    emptied = _json_segment({"iat": 0, "retired": []})
    with pytest.raises(VerificationError) as caught:
        verifier.with_revocations(f"{header}.{emptied}.{signature}")
    assert caught.value.reason is Reason.BAD_SIGNATURE


def test_revocation_list_without_a_retired_array_is_malformed(store: KeyStore, verifier: Verifier) -> None:
    root = root_private_key(store)
    assert isinstance(root, Ed25519PrivateKey)
    for claims in ({"iat": 0}, {"retired": "all"}, {"retired": [{"no": "kid"}]}):
        token = _compact({"alg": "EdDSA", "typ": "key-revocations+jwt"}, claims, root)
        with pytest.raises(VerificationError) as caught:
            verifier.with_revocations(token)
        assert caught.value.reason is Reason.MALFORMED, claims
