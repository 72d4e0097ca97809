"""Collects every domain's scheduled jobs and runs them with APScheduler (3.x) on the event loop.

``serve`` runs them in-process (``--no-scheduler`` leaves out the shared ones: the sweep and webhooks);
``license-server scheduler`` runs the shared ones without the HTTP server. Shared jobs are safe on any number of
replicas: the sweep takes a lease, webhooks claim their work with compare-and-set updates. Stopping the jobs
(``JobScheduler.stop``, on a clean shutdown: SIGTERM or Ctrl+C) hands this process's leases back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from license_server.billing.credits.jobs import CREDITS_ROLLOVER_JOB
from license_server.billing.invoices.jobs import ISSUE_INVOICES_JOB, RENDER_PDFS_JOB
from license_server.billing.subscriptions.jobs import SUBSCRIPTION_RENEWAL_JOB
from license_server.billing.usage.jobs import RELEASE_EXPIRED_HOLDS_JOB
from license_server.deployments.jobs import FLUSH_CHECK_INS_JOB
from license_server.events.jobs import WEBHOOKS_JOB
from license_server.events.leases import release_leases
from license_server.lifecycle.jobs import SWEEP_JOB
from license_server.metrics import JOB_CONSECUTIVE_FAILURES, JOB_DURATION, JOB_RUNS
from license_server.scheduling import ScheduledJob

if TYPE_CHECKING:
    from license_server.runtime import Runtime

logger = logging.getLogger(__name__)
JOBS: tuple[ScheduledJob, ...] = (
    SWEEP_JOB,
    FLUSH_CHECK_INS_JOB,
    WEBHOOKS_JOB,
    RELEASE_EXPIRED_HOLDS_JOB,
    SUBSCRIPTION_RENEWAL_JOB,
    CREDITS_ROLLOVER_JOB,
    ISSUE_INVOICES_JOB,
    RENDER_PDFS_JOB,
)
# How long stop() waits for cancelled runs to unwind (roll back) before handing their leases back.
STOP_GRACE_SECONDS = 5.0


class JobScheduler:
    """This process's scheduled jobs on APScheduler; ``stop`` ends them and releases the leases they took."""

    def __init__(self, runtime: Runtime, *, shared: bool, per_process: bool) -> None:
        self._runtime = runtime
        self._running: set[asyncio.Task[object]] = set()
        self._scheduler = AsyncIOScheduler(timezone="UTC")
        for job in JOBS:
            if (job.per_process and per_process) or (not job.per_process and shared):
                self._scheduler.add_job(
                    self._guarded(job),
                    "interval",
                    seconds=job.interval_seconds(runtime.settings),
                    id=job.name,
                    name=job.name,
                    max_instances=1,
                    coalesce=True,
                    # Run late rather than never: the first run is due when the app is built, and a start that
                    # takes over APScheduler's default second of grace (migrations) skipped it for a whole interval.
                    misfire_grace_time=None,
                    next_run_time=datetime.now(UTC),
                )

    def _guarded(self, job: ScheduledJob) -> object:
        async def run() -> None:
            task = asyncio.current_task()  # APScheduler runs a coroutine job as a task of its own
            if task is not None:
                self._running.add(task)
            health = self._runtime.job_health
            started = time.perf_counter()
            try:
                await job.run(self._runtime)
            except Exception as exc:  # one failed run must not stop the schedule; the next run retries
                failures = health.failed(job.name, exc)
                JOB_RUNS.labels(job.name, "failed").inc()
                JOB_CONSECUTIVE_FAILURES.labels(job.name).set(failures)
                logger.exception(
                    "scheduled job %s failed", job.name, extra={"job": job.name, "consecutive_failures": failures}
                )
            else:
                health.succeeded(job.name)
                JOB_RUNS.labels(job.name, "ok").inc()
                JOB_CONSECUTIVE_FAILURES.labels(job.name).set(0)
            finally:
                JOB_DURATION.labels(job.name).observe(time.perf_counter() - started)
                if task is not None:
                    self._running.discard(task)

        return run

    def start(self) -> None:
        self._scheduler.start()

    async def stop(self) -> None:
        """Stop scheduling, cancel the runs in progress (each rolls its transaction back), then release the leases,
        so another replica, or this one restarted, runs the leased jobs at its next tick instead of after the
        lease's timeout (twice the interval)."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)  # APScheduler's asyncio executor cancels the runs in progress
        if self._running:
            await asyncio.wait(set(self._running), timeout=STOP_GRACE_SECONDS)
        runtime = self._runtime
        async with runtime.session_factory() as session:
            await release_leases(session, holder=runtime.lease_holder, now=runtime.clock())


def build_scheduler(runtime: Runtime, *, shared: bool, per_process: bool) -> JobScheduler:
    return JobScheduler(runtime, shared=shared, per_process=per_process)
