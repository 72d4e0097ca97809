"""The status precedence ladder, rung by rung, with an injected time."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from license_server.lifecycle.status import (
    LicenseFacts,
    Reason,
    Status,
    StatusResult,
    compute_status,
    next_transition_at,
)

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


# -- when the status can next change ------------------------------------------------------------------------------
def _instants_between(start: datetime, end: datetime, rng: random.Random) -> list[datetime]:
    span = (end - start).total_seconds()
    if end == start:
        return []
    return [start, end - timedelta(microseconds=1)] + [start + timedelta(seconds=rng.random() * span) for _ in range(8)]


def test_next_transition_at_is_the_first_instant_the_status_can_differ() -> None:
    """Over many random facts: the status is constant from now until the instant given, and differs just after it;
    None only where no amount of time changes it."""
    rng = random.Random(15)  # noqa: S311 - reproducible test data, not security
    hours = [timedelta(hours=h) for h in (-900, -200, -30, -1, 0, 1, 30, 200, 900)]
    for _ in range(3000):
        first = NOW + rng.choice(hours) if rng.random() < 0.8 else None
        facts = LicenseFacts(
            starts_at=NOW + rng.choice(hours),
            expires_at=NOW + rng.choice(hours),
            notice=abs(rng.choice(hours)),
            grace=abs(rng.choice(hours)),
            heartbeat_window=abs(rng.choice(hours)) + timedelta(hours=1),
            suspended=rng.random() < 0.1,
            revoked=rng.random() < 0.05,
            first_activated_at=first,
            last_check_in_at=first + abs(rng.choice(hours)) if first and rng.random() < 0.7 else None,
            offline_deadline=NOW + rng.choice(hours) if rng.random() < 0.2 else None,
            clock_rolled_back=rng.random() < 0.03,
        )
        status = compute_status(facts, NOW)
        upcoming = next_transition_at(facts, NOW)
        if upcoming is None:
            later = [NOW + timedelta(hours=h) for h in (1, 100, 10_000, 1_000_000)]
            assert all(compute_status(facts, t) == status for t in later), facts
            continue
        assert upcoming >= NOW, facts
        assert all(compute_status(facts, t) == status for t in _instants_between(NOW, upcoming, rng)), facts
        assert compute_status(facts, upcoming + timedelta(microseconds=1)) != status, facts


def test_a_healthy_license_next_changes_at_its_heartbeat_deadline_then_its_notice_window() -> None:
    assert next_transition_at(HEALTHY, NOW) == NOW - timedelta(hours=1) + 7 * DAY
    always_seen = replace(HEALTHY, heartbeat_window=3650 * DAY)
    assert next_transition_at(always_seen, NOW) == HEALTHY.expires_at - 30 * DAY


def test_suspended_revoked_and_expired_licenses_change_only_with_their_facts() -> None:
    assert next_transition_at(replace(HEALTHY, suspended=True), NOW) is None
    assert next_transition_at(replace(HEALTHY, revoked=True), NOW) is None
    assert next_transition_at(replace(HEALTHY, expires_at=NOW - DAY), NOW) is None
