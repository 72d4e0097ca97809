"""The renewal job: roll every due subscription not on a test clock (renewals, scheduled downgrades, cancellations
at the period end, trial ends and their notice, overdue payments). Test clocks run the same function for their own
accounts when they are advanced (``billing/clocks/jobs.py``)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from license_server.billing.subscriptions.service import RenewalResult, renew_due_subscriptions
from license_server.events.leases import acquire_lease
from license_server.scheduling import ScheduledJob

if TYPE_CHECKING:
    from license_server.runtime import Runtime

RENEWAL_LEASE = "billing.subscriptions.renew"


async def run_subscription_renewals(runtime: Runtime, *, lease_ttl: timedelta | None = None) -> RenewalResult | None:
    """Under a lease (one replica at a time; each subscription is also rolled under its own row lock, so a second
    runner would change nothing; a clean stop hands the lease back). None when another replica holds the lease."""
    now = runtime.clock()
    ttl = lease_ttl or timedelta(seconds=max(2 * runtime.settings.subscription_renewal_interval_seconds, 30))
    async with runtime.session_factory() as session:
        if not await acquire_lease(session, name=RENEWAL_LEASE, holder=runtime.lease_holder, ttl=ttl, now=now):
            return None
        return await renew_due_subscriptions(session, now=now, state=runtime.billing)


SUBSCRIPTION_RENEWAL_JOB = ScheduledJob(
    RENEWAL_LEASE, run_subscription_renewals, lambda settings: settings.subscription_renewal_interval_seconds
)
