"""The webhook job the scheduler runs every few seconds, on every replica: fan out new events, then deliver.

Needs no lease. Both steps are idempotent and take their work with compare-and-set updates, so replicas
running them at once neither double a delivery nor send the same attempt twice.
"""

from __future__ import annotations

import functools
import logging
import ssl
import time
from typing import TYPE_CHECKING

import httpx

from license_server.events.egress import Egress
from license_server.events.webhooks import DELIVERY_TIMEOUT_SECONDS, USER_AGENT, deliver_due, fan_out
from license_server.scheduling import ScheduledJob

if TYPE_CHECKING:
    from license_server.runtime import Runtime

logger = logging.getLogger(__name__)
DELIVERIES_PER_RUN = 100


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """Built once: loading the CA bundle costs tens of milliseconds of CPU, and a new client per run (every few
    seconds, on the event loop) would stall every request in flight for that long."""
    return httpx.create_ssl_context()


async def run_webhook_jobs(runtime: Runtime, *, http_client: httpx.AsyncClient | None = None) -> int:
    """Run fan-out, then delivery; returns the number of deliveries attempted.

    A run that did something is logged at INFO with its counts and duration; an idle one (most, every few seconds
    on every replica) at DEBUG."""
    started = time.perf_counter()
    async with runtime.session_factory() as session:
        fanned_out = await fan_out(session, clock=runtime.clock)
    attempted = await _deliver(runtime, http_client)
    elapsed_ms = round((time.perf_counter() - started) * 1e3, 2)
    logger.log(
        logging.INFO if fanned_out or attempted else logging.DEBUG,
        "webhooks: %d deliveries queued, %d attempted in %.1f ms",
        fanned_out,
        attempted,
        elapsed_ms,
        extra={"job": "events.webhooks", "queued": fanned_out, "attempted": attempted, "duration_ms": elapsed_ms},
    )
    return attempted


async def _deliver(runtime: Runtime, http_client: httpx.AsyncClient | None) -> int:
    egress = Egress(runtime.settings.webhook_allowed_networks)
    if http_client is not None:
        return await deliver_due(
            runtime.session_factory,
            http_client=http_client,
            secret_box=runtime.webhook_secret_box,
            egress=egress,
            clock=runtime.clock,
            limit=DELIVERIES_PER_RUN,
        )
    async with httpx.AsyncClient(
        timeout=DELIVERY_TIMEOUT_SECONDS,
        follow_redirects=False,
        headers={"user-agent": USER_AGENT},
        verify=_tls_context(),
        # No HTTP(S)_PROXY, NO_PROXY or .netrc from the environment: a proxy would make the connection, to an
        # address nobody checked.
        trust_env=False,
    ) as client:
        return await deliver_due(
            runtime.session_factory,
            http_client=client,
            secret_box=runtime.webhook_secret_box,
            egress=egress,
            clock=runtime.clock,
            limit=DELIVERIES_PER_RUN,
        )


WEBHOOKS_JOB = ScheduledJob("events.webhooks", run_webhook_jobs, lambda settings: settings.webhook_interval_seconds)
