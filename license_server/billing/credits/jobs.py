"""The credits rollover job: forfeit expired grants and grant each cycle's included credits, for all accounts at once.

It runs under a lease (one replica at a time) and is idempotent: a second run in the same instant changes nothing.
Debits grant their own account's cycle credits too, so a debit at the first instant of a cycle never waits for it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from datetime import timedelta
from typing import TYPE_CHECKING

from license_server.billing.credits.service import RolloverResult, roll_over_credits
from license_server.events.leases import acquire_lease
from license_server.scheduling import ScheduledJob

if TYPE_CHECKING:
    from license_server.runtime import Runtime

logger = logging.getLogger(__name__)
ROLLOVER_LEASE = "billing.credits.rollover"
HOLDER = f"{socket.gethostname()}:{os.getpid()}"


async def run_credits_rollover(runtime: Runtime, *, lease_ttl: timedelta | None = None) -> RolloverResult | None:
    """The scheduled job: roll over if this process holds the lease; None when another replica does."""
    now = runtime.clock()
    ttl = lease_ttl or timedelta(seconds=max(2 * runtime.settings.credits_rollover_interval_seconds, 30))
    async with runtime.session_factory() as session:
        if not await acquire_lease(session, name=ROLLOVER_LEASE, holder=HOLDER, ttl=ttl, now=now):
            return None
        started = time.perf_counter()
        result = await roll_over_credits(session, state=runtime.billing, now=now)
    elapsed_ms = round((time.perf_counter() - started) * 1e3, 2)
    logger.info(
        "credits rollover: %d grants forfeited, %d granted in %.1f ms",
        result.forfeited,
        result.granted,
        elapsed_ms,
        extra={
            "job": "billing.credits.rollover",
            "forfeited": result.forfeited,
            "granted": result.granted,
            "duration_ms": elapsed_ms,
        },
    )
    return result


CREDITS_ROLLOVER_JOB = ScheduledJob(
    "billing.credits.rollover", run_credits_rollover, lambda settings: settings.credits_rollover_interval_seconds
)
