"""What an offline observer (the client library, the edge) feeds the one status function.

Pure and light (standard library only): the client imports it. Two parts:

- ``TrustedTime``: a high-water mark of trusted time — the newest ``iat`` of a verified document and the newest
  local clock reading. A clock more than ``tolerance`` behind it has been set back: the status becomes ``lost`` with
  reason ``CLOCK_ROLLBACK`` until the clock is right again.
- ``facts_from_claims``: the ``LicenseFacts`` a verified document's claims describe, for ``compute_status``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from license_server.lifecycle.status import LicenseFacts, Reason

DEFAULT_CLOCK_TOLERANCE = timedelta(minutes=10)


@dataclass
class TrustedTime:
    newest_iat: float = 0.0
    newest_local: float = 0.0
    tolerance: float = DEFAULT_CLOCK_TOLERANCE.total_seconds()

    @property
    def mark(self) -> float:
        return max(self.newest_iat, self.newest_local)

    def observe(self, now: datetime, iat: float | None = None) -> bool:
        """Record a clock reading (and a verified document's ``iat``); True when the clock has been set back."""
        if iat is not None and iat > self.newest_iat:
            self.newest_iat = float(iat)
        reading = now.timestamp()
        if reading < self.mark - self.tolerance:
            return True  # the reading is not trusted, so it does not lower or move the mark
        self.newest_local = max(self.newest_local, reading)
        return False

    def to_json(self) -> dict[str, float]:
        return {"newest_iat": self.newest_iat, "newest_local": self.newest_local}

    @classmethod
    def from_json(cls, value: object, tolerance: float) -> TrustedTime:
        if not isinstance(value, dict):
            return cls(tolerance=tolerance)
        numbers = [value.get("newest_iat"), value.get("newest_local")]
        if not all(isinstance(n, int | float) and not isinstance(n, bool) for n in numbers):
            return cls(tolerance=tolerance)
        return cls(float(numbers[0]), float(numbers[1]), tolerance)  # type: ignore[arg-type]


def parse_timestamp(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError("not an RFC 3339 timestamp")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("no UTC offset")
    return parsed.astimezone(UTC)


def _days(claims: dict[str, Any], name: str, default: int) -> timedelta:
    value = claims.get(name, default)
    return timedelta(days=value if isinstance(value, int) and not isinstance(value, bool) else default)


def facts_from_claims(
    claims: dict[str, Any],
    *,
    now: datetime,
    clock_rolled_back: bool = False,
    offline_deadline: datetime | None = None,
) -> LicenseFacts:
    """The facts a verified document states. Raises ValueError when its dates are unreadable.

    Revocation and suspension come from the status the vendor computed at ``iat``. The observer is running, so it
    counts as checked in now: whether the vendor has heard from it is the vendor's business (and the document's
    ``status`` when it said so), not a reason for the install to lock itself out.
    """
    reason = claims.get("status_reason")
    iat = claims.get("iat")
    issued = datetime.fromtimestamp(iat, UTC) if isinstance(iat, int | float) and not isinstance(iat, bool) else now
    return LicenseFacts(
        starts_at=parse_timestamp(claims.get("starts_at")),
        expires_at=parse_timestamp(claims.get("expires_at")),
        notice=_days(claims, "notice_days", 30),
        grace=_days(claims, "grace_days", 0),
        heartbeat_window=_days(claims, "heartbeat_window_days", 7),
        suspended=reason == Reason.SUSPENDED.value,
        revoked=reason == Reason.REVOKED.value,
        first_activated_at=issued,
        last_check_in_at=now,
        clock_rolled_back=clock_rolled_back,
        offline_deadline=offline_deadline,
    )
