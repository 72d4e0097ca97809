"""Collects every domain's scheduled jobs and runs them with APScheduler (3.x) on the event loop.

``serve`` runs them in-process (``--no-scheduler`` leaves out the shared ones: the sweep and webhooks);
``license-server scheduler`` runs the shared ones without the HTTP server. Shared jobs are safe on any number of
replicas: the sweep takes a lease, webhooks claim their work with compare-and-set updates.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from license_server.billing.credits.jobs import CREDITS_ROLLOVER_JOB
from license_server.billing.usage.jobs import RELEASE_EXPIRED_HOLDS_JOB
from license_server.deployments.jobs import FLUSH_CHECK_INS_JOB
from license_server.events.jobs import WEBHOOKS_JOB
from license_server.lifecycle.jobs import SWEEP_JOB
from license_server.scheduling import ScheduledJob

if TYPE_CHECKING:
    from license_server.runtime import Runtime

logger = logging.getLogger(__name__)
JOBS: tuple[ScheduledJob, ...] = (
    SWEEP_JOB,
    FLUSH_CHECK_INS_JOB,
    WEBHOOKS_JOB,
    RELEASE_EXPIRED_HOLDS_JOB,
    CREDITS_ROLLOVER_JOB,
)


def _guarded(job: ScheduledJob, runtime: Runtime) -> object:
    async def run() -> None:
        try:
            await job.run(runtime)
        except Exception:  # one failed run must not stop the schedule; the next run retries
            logger.exception("scheduled job %s failed", job.name)

    return run


def build_scheduler(runtime: Runtime, *, shared: bool, per_process: bool) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(timezone="UTC")
    for job in JOBS:
        if (job.per_process and per_process) or (not job.per_process and shared):
            scheduler.add_job(
                _guarded(job, runtime),
                "interval",
                seconds=job.interval_seconds(runtime.settings),
                id=job.name,
                name=job.name,
                max_instances=1,
                coalesce=True,
                next_run_time=datetime.now(UTC),
            )
    return scheduler
