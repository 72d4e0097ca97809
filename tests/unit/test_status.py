"""The status precedence ladder, rung by rung, with an injected time."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from license_server.lifecycle.status import LicenseFacts, Reason, Status, StatusResult, compute_status

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)

# A healthy license: started a month ago, expires in a year, activated and seen an hour ago.
HEALTHY = LicenseFacts(
    starts_at=NOW - 30 * DAY,
    expires_at=NOW + 365 * DAY,
    notice=30 * DAY,
    grace=0 * DAY,
    heartbeat_window=7 * DAY,
    first_activated_at=NOW - 20 * DAY,
    last_check_in_at=NOW - timedelta(hours=1),
)


def status_of(facts: LicenseFacts, now: datetime = NOW) -> StatusResult:
    return compute_status(facts, now)


def test_healthy_license_is_active() -> None:
    assert status_of(HEALTHY) == StatusResult(Status.ACTIVE, Reason.ACTIVE)


def test_revoked_is_inactive_and_outranks_everything() -> None:
    facts = replace(HEALTHY, revoked=True, suspended=True, expires_at=NOW - DAY, starts_at=NOW - 400 * DAY)
    assert status_of(facts) == StatusResult(Status.INACTIVE, Reason.REVOKED)


def test_suspended_is_inactive_and_outranks_not_started_and_expiry() -> None:
    assert status_of(replace(HEALTHY, suspended=True)) == StatusResult(Status.INACTIVE, Reason.SUSPENDED)
    future = replace(HEALTHY, suspended=True, starts_at=NOW + DAY)
    assert status_of(future).reason is Reason.SUSPENDED
    expired = replace(HEALTHY, suspended=True, expires_at=NOW - DAY)
    assert status_of(expired).reason is Reason.SUSPENDED


def test_before_start_is_inactive_not_started() -> None:
    facts = replace(HEALTHY, starts_at=NOW + timedelta(seconds=1))
    assert status_of(facts) == StatusResult(Status.INACTIVE, Reason.NOT_STARTED)


def test_start_instant_itself_counts_as_started() -> None:
    assert status_of(replace(HEALTHY, starts_at=NOW)).status is Status.ACTIVE


def test_at_expiry_without_grace_is_expired() -> None:
    facts = replace(HEALTHY, expires_at=NOW)
    assert status_of(facts) == StatusResult(Status.EXPIRED, Reason.EXPIRED)


def test_expired_outranks_never_activated_and_lost() -> None:
    never = replace(HEALTHY, expires_at=NOW - DAY, first_activated_at=None, last_check_in_at=None)
    assert status_of(never).status is Status.EXPIRED
    quiet = replace(HEALTHY, expires_at=NOW - DAY, last_check_in_at=NOW - 30 * DAY)
    assert status_of(quiet).status is Status.EXPIRED


def test_inside_grace_period_is_expiring_with_grace_reason() -> None:
    facts = replace(HEALTHY, expires_at=NOW - 2 * DAY, grace=7 * DAY)
    assert status_of(facts) == StatusResult(Status.EXPIRING, Reason.IN_GRACE_PERIOD)


def test_grace_period_end_is_expired() -> None:
    facts = replace(HEALTHY, expires_at=NOW - 7 * DAY, grace=7 * DAY)
    assert status_of(facts) == StatusResult(Status.EXPIRED, Reason.EXPIRED)


def test_never_activated_is_inactive() -> None:
    facts = replace(HEALTHY, first_activated_at=None, last_check_in_at=None)
    assert status_of(facts) == StatusResult(Status.INACTIVE, Reason.NOT_ACTIVATED)


def test_no_check_in_within_heartbeat_window_is_lost() -> None:
    facts = replace(HEALTHY, last_check_in_at=NOW - 7 * DAY - timedelta(seconds=1))
    assert status_of(facts) == StatusResult(Status.LOST, Reason.HEARTBEAT_MISSED)


def test_check_in_exactly_at_window_edge_is_not_lost() -> None:
    assert status_of(replace(HEALTHY, last_check_in_at=NOW - 7 * DAY)).status is Status.ACTIVE


def test_activation_counts_as_a_check_in_when_none_followed() -> None:
    recent = replace(HEALTHY, first_activated_at=NOW - DAY, last_check_in_at=None)
    assert status_of(recent).status is Status.ACTIVE
    stale = replace(HEALTHY, first_activated_at=NOW - 8 * DAY, last_check_in_at=None)
    assert status_of(stale).status is Status.LOST


def test_lost_outranks_expiring() -> None:
    facts = replace(HEALTHY, expires_at=NOW + 5 * DAY, last_check_in_at=NOW - 8 * DAY)
    assert status_of(facts).status is Status.LOST


def test_lost_inside_grace_period_is_lost() -> None:
    facts = replace(HEALTHY, expires_at=NOW - DAY, grace=7 * DAY, last_check_in_at=NOW - 8 * DAY)
    assert status_of(facts).status is Status.LOST


def test_within_notice_window_is_expiring_soon() -> None:
    facts = replace(HEALTHY, expires_at=NOW + 30 * DAY)
    assert status_of(facts) == StatusResult(Status.EXPIRING, Reason.EXPIRES_SOON)


def test_just_outside_notice_window_is_active() -> None:
    facts = replace(HEALTHY, expires_at=NOW + 30 * DAY + timedelta(seconds=1))
    assert status_of(facts).status is Status.ACTIVE


@pytest.mark.parametrize("notice_days", [0, 7, 90])
def test_notice_window_is_per_license(notice_days: int) -> None:
    facts = replace(HEALTHY, notice=notice_days * DAY, expires_at=NOW + 10 * DAY)
    expected = Status.EXPIRING if notice_days >= 10 else Status.ACTIVE
    assert status_of(facts).status is expected


def test_status_follows_time_through_the_whole_life_of_a_license() -> None:
    """One license walked through time: not started → never activated → active → expiring → grace → expired."""
    facts = LicenseFacts(
        starts_at=NOW, expires_at=NOW + 100 * DAY, notice=30 * DAY, grace=5 * DAY, heartbeat_window=7 * DAY
    )
    assert status_of(facts, NOW - DAY).reason is Reason.NOT_STARTED
    assert status_of(facts, NOW + DAY).reason is Reason.NOT_ACTIVATED
    seen = replace(facts, first_activated_at=NOW + DAY)
    for day, reason in [
        (2, Reason.ACTIVE),
        (69, Reason.ACTIVE),
        (71, Reason.EXPIRES_SOON),
        (101, Reason.IN_GRACE_PERIOD),
        (105, Reason.EXPIRED),
    ]:
        moment = NOW + day * DAY
        assert status_of(replace(seen, last_check_in_at=moment), moment).reason is reason, day
