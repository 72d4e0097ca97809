"""The air-gapped file formats: any change is refused, and each wrong file gets its own reason code."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from license_server.offline import files
from license_server.offline.files import Binding, FileError, FileReason, Measurement
from license_server.verifier import Reason, VerificationError, Verifier
from tests.crypto.conftest import NOW, fixed_clock
from tests.offline.conftest import FINGERPRINT, LicenseFileFactory

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FEWER = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _mutations(text: str) -> st.SearchStrategy[str]:
    """Replace, delete or insert one character anywhere before the trailing newline."""
    body = text.rstrip("\n")
    printable = st.characters(min_codepoint=9, max_codepoint=126)
    position = st.integers(min_value=0, max_value=len(body) - 1)
    replaced = st.tuples(position, printable).filter(lambda p: body[p[0]] != p[1])
    return st.one_of(
        replaced.map(lambda p: body[: p[0]] + p[1] + body[p[0] + 1 :]),
        position.map(lambda i: body[:i] + body[i + 1 :]),
        st.tuples(position, printable).map(lambda p: body[: p[0]] + p[1] + body[p[0] :]),
    ).map(lambda changed: changed + "\n")


def _reason(verifier: Verifier, text: str, **kwargs: Any) -> Reason:
    with pytest.raises(VerificationError) as caught:
        files.verify_license_file(text, verifier, **kwargs)
    return caught.value.reason


# -- license files ------------------------------------------------------------------------------------------------
def test_license_file_round_trips_with_its_binding(
    make_license_file: LicenseFileFactory, offline_verifier: Verifier, install_key: Ed25519PrivateKey
) -> None:
    text = make_license_file()
    verified = files.verify_license_file(
        text, offline_verifier, fingerprint=FINGERPRINT, install_key=files.install_key_id(install_key.public_key())
    )
    assert verified.binding.fingerprint == FINGERPRINT
    assert verified.claims["license_id"] in text  # the informational header line
    assert text.startswith(files.ARMOR_BEGIN)
    assert text.rstrip().endswith(files.ARMOR_END)


@PROPERTY
@given(data=st.data())
def test_any_change_to_a_license_file_is_refused(
    make_license_file: LicenseFileFactory, offline_verifier: Verifier, data: st.DataObject
) -> None:
    text = make_license_file()
    changed = data.draw(_mutations(text))
    with pytest.raises(VerificationError):
        files.verify_license_file(changed, offline_verifier)


def test_edited_header_lines_are_refused_although_never_trusted(
    make_license_file: LicenseFileFactory, offline_verifier: Verifier
) -> None:
    text = make_license_file()
    edited = text.replace("Expires: 2032-01-01T00:00:00Z", "Expires: 2099-01-01T00:00:00Z")
    assert edited != text
    assert _reason(offline_verifier, edited) is Reason.MALFORMED


def test_windows_line_endings_and_trailing_whitespace_are_tolerated(
    make_license_file: LicenseFileFactory, offline_verifier: Verifier
) -> None:
    text = make_license_file()
    files.verify_license_file(text.replace("\n", "\r\n"), offline_verifier)
    files.verify_license_file(text.rstrip("\n") + "\n\n  \n", offline_verifier)


def test_truncated_license_file_is_malformed(make_license_file: LicenseFileFactory, offline_verifier: Verifier) -> None:
    text = make_license_file()
    assert _reason(offline_verifier, text[: len(text) // 2]) is Reason.MALFORMED


@FEWER
@given(fingerprint=st.text(min_size=1, max_size=80).filter(lambda f: f != FINGERPRINT))
def test_any_other_fingerprint_is_refused_with_its_own_reason(
    make_license_file: LicenseFileFactory, offline_verifier: Verifier, fingerprint: str
) -> None:
    assert _reason(offline_verifier, make_license_file(), fingerprint=fingerprint) is Reason.FINGERPRINT_MISMATCH


def test_another_install_key_is_refused_with_its_own_reason(
    make_license_file: LicenseFileFactory, offline_verifier: Verifier
) -> None:
    other = files.install_key_id(Ed25519PrivateKey.generate().public_key())
    assert _reason(offline_verifier, make_license_file(), install_key=other) is Reason.INSTALL_KEY_MISMATCH


@FEWER
@given(after=st.integers(min_value=60, max_value=10 * 365 * 86400))
def test_an_expired_file_is_refused_with_its_own_reason(
    make_license_file: LicenseFileFactory, offline_store: Any, after: int
) -> None:
    """Any moment from the file's exp plus the 60 s leeway on."""
    text = make_license_file(ttl=timedelta(days=30))
    moment = NOW + timedelta(days=30, seconds=after)
    later = Verifier(offline_store.load().root_public_key, clock=fixed_clock(moment))
    assert _reason(later, text) is Reason.DOCUMENT_EXPIRED
    # Dates are the caller's to judge when it asks so (the edge reports such a file as expired, not refused).
    assert files.verify_license_file(text, later, check_dates=False).claims["exp"] < moment.timestamp()


@FEWER
@given(ahead=st.integers(min_value=int(files.FUTURE_TOLERANCE.total_seconds()) + 1, max_value=10 * 365 * 86400))
def test_an_iat_too_far_in_the_future_is_refused_with_its_own_reason(
    make_license_file: LicenseFileFactory, offline_store: Any, ahead: int
) -> None:
    """A file issued more than FUTURE_TOLERANCE after this machine's clock: the clock (or the file) is wrong."""
    text = make_license_file()
    earlier = Verifier(offline_store.load().root_public_key, clock=fixed_clock(NOW - timedelta(seconds=ahead)))
    assert _reason(earlier, text) is Reason.ISSUED_IN_FUTURE


def test_an_iat_within_the_tolerance_but_before_nbf_is_not_yet_valid(
    make_license_file: LicenseFileFactory, offline_store: Any
) -> None:
    slightly = Verifier(offline_store.load().root_public_key, clock=fixed_clock(NOW - timedelta(minutes=5)))
    assert _reason(slightly, make_license_file()) is Reason.NOT_YET_VALID  # nbf has a leeway of only 60 s


def test_a_plain_license_document_is_not_a_license_file(
    make_license_file: LicenseFileFactory, offline_signer: Any, offline_verifier: Verifier
) -> None:
    from tests.crypto.conftest import make_claims

    claims = make_claims()
    text = files.armor(offline_signer.sign(claims), claims)
    assert _reason(offline_verifier, text) is Reason.NOT_A_LICENSE_FILE


def test_license_file_signed_under_another_root_is_refused(make_license_file: LicenseFileFactory) -> None:
    other_root = Ed25519PrivateKey.generate().public_key()
    assert _reason(Verifier(other_root, clock=fixed_clock(NOW)), make_license_file()) is Reason.UNCERTIFIED_KEY


# -- activation requests ------------------------------------------------------------------------------------------
def _request(key: Ed25519PrivateKey) -> str:
    return files.build_activation_request(
        install_key=key, license_key="LSK-TEST", fingerprint=FINGERPRINT, hostname="host-1", now=NOW
    ).decode()


def test_activation_request_round_trips(install_key: Ed25519PrivateKey) -> None:
    parsed = files.parse_activation_request(_request(install_key), now=NOW)
    assert (parsed.license_key, parsed.fingerprint, parsed.hostname) == ("LSK-TEST", FINGERPRINT, "host-1")
    assert parsed.install_key == files.install_key_id(install_key.public_key())


@PROPERTY
@given(data=st.data())
def test_any_change_to_a_request_file_is_refused(install_key: Ed25519PrivateKey, data: st.DataObject) -> None:
    changed = data.draw(_mutations(_request(install_key)))
    with pytest.raises(FileError) as caught:
        files.parse_activation_request(changed, now=NOW)
    assert caught.value.reason in {FileReason.MALFORMED, FileReason.BAD_SIGNATURE}


def test_request_with_content_changed_and_recanonicalised_fails_its_signature(install_key: Ed25519PrivateKey) -> None:
    import json

    value = json.loads(_request(install_key))
    value["fingerprint"] = "fp1:someone-else"
    with pytest.raises(FileError) as caught:
        files.parse_activation_request(files.canonical_json(value), now=NOW)
    assert caught.value.reason is FileReason.BAD_SIGNATURE


def test_stale_and_future_requests_are_refused(install_key: Ed25519PrivateKey) -> None:
    text = _request(install_key)
    for now, reason in [
        (NOW + timedelta(days=31), FileReason.REQUEST_EXPIRED),
        (NOW - timedelta(hours=1), FileReason.REQUEST_FROM_FUTURE),
    ]:
        with pytest.raises(FileError) as caught:
            files.parse_activation_request(text, now=now)
        assert caught.value.reason is reason


# -- usage reports ------------------------------------------------------------------------------------------------
def _binding(key: Ed25519PrivateKey) -> Binding:
    return Binding("7d1f0c3c-2d7a-4c4e-9d0b-8f6f0c2b7a11", FINGERPRINT, files.install_key_id(key.public_key()))


def _measurement(i: int) -> Measurement:
    return Measurement(NOW + timedelta(hours=i), f"m-{i}", 3 + i, (("ws-1", 5 + i), ("ws-2", 1)))


def _chain(key: Ed25519PrivateKey, length: int) -> list[bytes]:
    reports: list[bytes] = []
    prev = files.genesis_hash(files.install_key_id(key.public_key()))
    for seq in range(1, length + 1):
        text = files.build_usage_report(
            install_key=key,
            binding=_binding(key),
            license_id="5f0c3c1e-2d7a-4c4e-9d0b-8f6f0c2b7a11",
            seq=seq,
            prev=prev,
            measurements=[_measurement(seq)],
            now=NOW + timedelta(days=seq),
        )
        prev = files.report_hash(text)
        reports.append(text)
    return reports


@PROPERTY
@given(data=st.data())
def test_any_change_to_a_usage_report_is_refused(install_key: Ed25519PrivateKey, data: st.DataObject) -> None:
    changed = data.draw(_mutations(_chain(install_key, 1)[0].decode()))
    with pytest.raises(FileError) as caught:
        files.parse_usage_report(changed)
    assert caught.value.reason in {FileReason.MALFORMED, FileReason.BAD_SIGNATURE}


def _import_all(key: Ed25519PrivateKey, texts: list[bytes]) -> tuple[int, str]:
    """Import reports in the given order as the vendor does; returns the chain head."""
    last_seq, last_hash = 0, files.genesis_hash(files.install_key_id(key.public_key()))
    for text in texts:
        report = files.parse_usage_report(text)
        files.check_next_link(report, last_seq=last_seq, last_hash=last_hash)
        last_seq, last_hash = report.seq, report.hash
    return last_seq, last_hash


@settings(max_examples=60, deadline=None)
@given(length=st.integers(min_value=2, max_value=6), data=st.data())
def test_usage_chain_missing_or_repeated_link_is_refused_with_its_own_reason(length: int, data: st.DataObject) -> None:
    key = Ed25519PrivateKey.generate()
    chain = _chain(key, length)
    assert _import_all(key, chain)[0] == length  # in order, every link is accepted
    skipped = data.draw(st.integers(min_value=0, max_value=length - 2))
    with pytest.raises(FileError) as gap:
        _import_all(key, chain[:skipped] + chain[skipped + 1 :])
    assert gap.value.reason is FileReason.USAGE_CHAIN_GAP
    repeated = data.draw(st.integers(min_value=0, max_value=length - 1))
    with pytest.raises(FileError) as replay:
        _import_all(key, [*chain[: repeated + 1], chain[repeated]])
    assert replay.value.reason is FileReason.USAGE_REPLAYED
    swapped = [*chain[:skipped], chain[skipped + 1], chain[skipped]]
    with pytest.raises(FileError) as reorder:
        _import_all(key, swapped)
    assert reorder.value.reason is FileReason.USAGE_CHAIN_GAP  # the later link arrives first: one is missing


def test_a_link_from_another_chain_breaks_the_chain() -> None:
    key = Ed25519PrivateKey.generate()
    chain = _chain(key, 2)
    first = files.parse_usage_report(chain[0])
    forked = files.parse_usage_report(chain[1])
    with pytest.raises(FileError) as caught:
        files.check_next_link(replace(forked, prev=hashlib.sha256(b"x").hexdigest()), last_seq=1, last_hash=first.hash)
    assert caught.value.reason is FileReason.USAGE_CHAIN_BROKEN


def test_measurements_out_of_time_order_are_refused(install_key: Ed25519PrivateKey) -> None:
    text = files.build_usage_report(
        install_key=install_key,
        binding=_binding(install_key),
        license_id="l",
        seq=1,
        prev=files.genesis_hash("k"),
        measurements=[_measurement(2), _measurement(1)],
        now=NOW,
    )
    with pytest.raises(FileError) as caught:
        files.parse_usage_report(text)
    assert caught.value.reason is FileReason.USAGE_OUT_OF_ORDER
