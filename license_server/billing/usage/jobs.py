"""Scheduled: holds past their TTL are released, so a crashed platform worker's reservation frees its quota."""

from __future__ import annotations

from typing import TYPE_CHECKING

from license_server.billing.usage.service import release_expired_holds
from license_server.scheduling import ScheduledJob

if TYPE_CHECKING:
    from license_server.runtime import Runtime

EXPIRED_HOLDS_INTERVAL_SECONDS = 30.0


async def release_expired_reservations(runtime: Runtime) -> int:
    """Idempotent and safe on any number of replicas: each counter's holds are freed under that counter's lock,
    and a hold already freed (by a write that found it in the way, or another replica) is not freed twice."""
    return await release_expired_holds(runtime.billing)


RELEASE_EXPIRED_HOLDS_JOB = ScheduledJob(
    name="billing.release_expired_holds",
    run=release_expired_reservations,
    interval_seconds=lambda _settings: EXPIRED_HOLDS_INTERVAL_SECONDS,
)
