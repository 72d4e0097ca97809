"""The one place a license's status is decided. Pure: facts and a time in, status and reason out.

Imports nothing beyond the standard library, so the API, the scheduler, the inner API, the edge and the offline
client all call exactly this function.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class Status(StrEnum):
    NONE = "none"  # no license at all (only the inner API says this)
    INACTIVE = "inactive"
    ACTIVE = "active"
    EXPIRING = "expiring"
    EXPIRED = "expired"
    LOST = "lost"


class Reason(StrEnum):
    REVOKED = "REVOKED"
    SUSPENDED = "SUSPENDED"
    NOT_STARTED = "NOT_STARTED"
    EXPIRED = "EXPIRED"
    NOT_ACTIVATED = "NOT_ACTIVATED"
    HEARTBEAT_MISSED = "HEARTBEAT_MISSED"
    IN_GRACE_PERIOD = "IN_GRACE_PERIOD"
    EXPIRES_SOON = "EXPIRES_SOON"
    ACTIVE = "ACTIVE"
    # Observed by an offline verifier (the client library, the edge), never by the server:
    CLOCK_ROLLBACK = "CLOCK_ROLLBACK"  # the local clock went back past the trusted-time high-water mark
    SERVER_UNREACHABLE = "SERVER_UNREACHABLE"  # no contact, and the last good document is past its TTL + grace
    NO_LICENSE = "NO_LICENSE"  # no license document at all


# Reasons only an offline observer gives: a document the server signs never carries them.
OBSERVER_REASONS = frozenset({Reason.CLOCK_ROLLBACK, Reason.SERVER_UNREACHABLE, Reason.NO_LICENSE})


@dataclass(frozen=True)
class LicenseFacts:
    """What the status depends on: stored facts about one license and its effective terms."""

    starts_at: datetime
    expires_at: datetime
    notice: timedelta
    grace: timedelta
    heartbeat_window: timedelta
    suspended: bool = False
    revoked: bool = False
    first_activated_at: datetime | None = None
    last_check_in_at: datetime | None = None
    # What an offline observer knows besides the license: its clock went back, or until when its last good
    # document may stand in for the server (the document's TTL plus the offline grace).
    clock_rolled_back: bool = False
    offline_deadline: datetime | None = None


@dataclass(frozen=True)
class StatusResult:
    status: Status
    reason: Reason


def compute_status(facts: LicenseFacts | None, now: datetime, *, unreachable: bool = False) -> StatusResult:
    """The precedence ladder: the first rung that matches decides.

    ``facts`` is None when an offline observer holds no license document at all; ``unreachable`` says whether it
    could not ask the server either.
    """
    if facts is None:
        if unreachable:
            return StatusResult(Status.LOST, Reason.SERVER_UNREACHABLE)
        return StatusResult(Status.NONE, Reason.NO_LICENSE)
    if facts.revoked:
        return StatusResult(Status.INACTIVE, Reason.REVOKED)
    if facts.suspended:
        return StatusResult(Status.INACTIVE, Reason.SUSPENDED)
    if facts.clock_rolled_back:
        # Every rung below compares dates with a clock that can no longer be trusted.
        return StatusResult(Status.LOST, Reason.CLOCK_ROLLBACK)
    if now < facts.starts_at:
        return StatusResult(Status.INACTIVE, Reason.NOT_STARTED)
    if now >= facts.expires_at + facts.grace:
        return StatusResult(Status.EXPIRED, Reason.EXPIRED)
    if facts.first_activated_at is None:
        return StatusResult(Status.INACTIVE, Reason.NOT_ACTIVATED)
    last_seen = facts.last_check_in_at or facts.first_activated_at
    if now - last_seen > facts.heartbeat_window:
        return StatusResult(Status.LOST, Reason.HEARTBEAT_MISSED)
    if facts.offline_deadline is not None and now >= facts.offline_deadline:
        return StatusResult(Status.LOST, Reason.SERVER_UNREACHABLE)
    if now >= facts.expires_at:
        # Past expiry but inside the grace period: still usable, and as urgent a warning as there is.
        return StatusResult(Status.EXPIRING, Reason.IN_GRACE_PERIOD)
    if now >= facts.expires_at - facts.notice:
        return StatusResult(Status.EXPIRING, Reason.EXPIRES_SOON)
    return StatusResult(Status.ACTIVE, Reason.ACTIVE)


def next_transition_at(facts: LicenseFacts, now: datetime) -> datetime | None:
    """When ``compute_status`` can next give another answer for these facts, if time alone moves on.

    The status is the same at every instant of ``[now, result)`` and differs just after ``result`` (which is
    ``now`` itself when a heartbeat deadline is this very instant: lost is *past* the deadline); None when only a
    change of the facts (an action, a check-in) can change it. The sweep visits a license only once this instant
    has passed, so this follows ``compute_status``'s ladder rung by rung (tests/unit/test_status.py checks it).
    """
    if facts.revoked or facts.suspended or facts.clock_rolled_back:
        return None
    if now < facts.starts_at:
        return facts.starts_at
    grace_ends = facts.expires_at + facts.grace
    if now >= grace_ends:
        return None  # expired is final
    if facts.first_activated_at is None:
        return grace_ends
    last_seen = facts.last_check_in_at or facts.first_activated_at
    heartbeat_deadline = last_seen + facts.heartbeat_window
    if now > heartbeat_deadline:
        return grace_ends  # lost until a check-in (a fact) or the end of grace
    if facts.offline_deadline is not None and now >= facts.offline_deadline:
        return min(grace_ends, heartbeat_deadline)  # the heartbeat rung outranks this one
    # Active or expiring: the next of the notice window, expiry and the end of grace, unless the heartbeat (lost
    # strictly after its deadline: the deadline itself is the last instant still active) or the offline deadline
    # comes first.
    expiring_at = facts.expires_at - facts.notice
    schedule = [at for at in (expiring_at, facts.expires_at, grace_ends) if at > now]
    schedule.append(heartbeat_deadline)
    if facts.offline_deadline is not None:
        schedule.append(facts.offline_deadline)
    return min(schedule)
