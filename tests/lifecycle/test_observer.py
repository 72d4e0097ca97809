"""The offline observer's rungs of the one status ladder, and the trusted-time high-water mark."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from license_server.lifecycle.observer import TrustedTime, facts_from_claims
from license_server.lifecycle.status import LicenseFacts, Reason, Status, StatusResult, compute_status

NOW = datetime(2027, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)
FACTS = LicenseFacts(
    starts_at=NOW - 30 * DAY,
    expires_at=NOW + 300 * DAY,
    notice=30 * DAY,
    grace=0 * DAY,
    heartbeat_window=7 * DAY,
    first_activated_at=NOW - 10 * DAY,
    last_check_in_at=NOW,
)


def test_no_document_is_none_or_lost_when_the_server_cannot_be_asked() -> None:
    assert compute_status(None, NOW) == StatusResult(Status.NONE, Reason.NO_LICENSE)
    assert compute_status(None, NOW, unreachable=True) == StatusResult(Status.LOST, Reason.SERVER_UNREACHABLE)


def test_past_the_offline_deadline_is_lost_server_unreachable() -> None:
    facts = replace(FACTS, offline_deadline=NOW + DAY)
    assert compute_status(facts, NOW).reason is Reason.ACTIVE
    assert compute_status(facts, NOW + DAY) == StatusResult(Status.LOST, Reason.SERVER_UNREACHABLE)


def test_clock_rollback_outranks_every_time_based_rung_but_not_revocation() -> None:
    rolled = replace(FACTS, clock_rolled_back=True)
    assert compute_status(rolled, NOW) == StatusResult(Status.LOST, Reason.CLOCK_ROLLBACK)
    # Winding the clock back into the license's term does not make an expired license work again.
    assert compute_status(replace(rolled, expires_at=NOW - DAY), NOW).reason is Reason.CLOCK_ROLLBACK
    assert compute_status(replace(rolled, revoked=True), NOW).reason is Reason.REVOKED


def test_expiry_outranks_the_offline_deadline() -> None:
    facts = replace(FACTS, expires_at=NOW - DAY, offline_deadline=NOW - DAY)
    assert compute_status(facts, NOW).reason is Reason.EXPIRED


def test_trusted_time_detects_a_clock_set_back_beyond_the_tolerance_only() -> None:
    trusted = TrustedTime(tolerance=600)
    assert not trusted.observe(NOW, iat=(NOW - DAY).timestamp())
    assert not trusted.observe(NOW - timedelta(minutes=9))  # ordinary skew
    assert trusted.observe(NOW - timedelta(minutes=11))
    assert trusted.newest_local == NOW.timestamp()  # an untrusted reading does not move the mark
    assert not trusted.observe(NOW + timedelta(minutes=1))  # the clock is right again


def test_trusted_time_counts_a_documents_iat_as_trusted() -> None:
    trusted = TrustedTime(tolerance=600)
    assert trusted.observe(NOW, iat=(NOW + timedelta(hours=1)).timestamp())  # the vendor signed an hour ahead of us


def test_trusted_time_survives_a_round_trip_and_garbage_reads_as_empty() -> None:
    trusted = TrustedTime(newest_iat=1.0, newest_local=2.0, tolerance=5)
    assert TrustedTime.from_json(trusted.to_json(), 5) == trusted
    assert TrustedTime.from_json({"newest_iat": "x"}, 5) == TrustedTime(tolerance=5)
    assert TrustedTime.from_json([1, 2], 5) == TrustedTime(tolerance=5)


def test_facts_from_claims_read_the_license_dates_and_revocation() -> None:
    claims = {
        "iat": int(NOW.timestamp()),
        "starts_at": "2027-01-01T00:00:00Z",
        "expires_at": "2028-01-01T00:00:00Z",
        "notice_days": 10,
        "grace_days": 5,
        "heartbeat_window_days": 7,
        "status_reason": "REVOKED",
    }
    facts = facts_from_claims(claims, now=NOW)
    assert facts.expires_at == datetime(2028, 1, 1, tzinfo=UTC)
    assert (facts.notice, facts.grace, facts.revoked) == (10 * DAY, 5 * DAY, True)
    assert compute_status(facts, NOW).reason is Reason.REVOKED
