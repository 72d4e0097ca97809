"""Scheduled: issue the invoice of every subscription whose period has begun, and render issued invoices' PDFs.

Issuing runs under a lease (one replica at a time; the unique (subscription, period_start) keeps a second runner
harmless anyway). PDFs are rendered here in batches and on first download, never in the issuing transaction, so a
rollover of many accounts costs what issuing costs (bench/invoices.py measures both).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from license_server.billing.invoices import service
from license_server.billing.invoices.rendering import render_missing_pdfs
from license_server.events.leases import acquire_lease
from license_server.scheduling import ScheduledJob

if TYPE_CHECKING:
    from license_server.runtime import Runtime

ISSUE_LEASE = "billing.invoices.issue"
HOLDER = f"{socket.gethostname()}:{os.getpid()}"


async def issue_due_invoices(
    session: AsyncSession,
    *,
    now: datetime,
    account_ids: Sequence[uuid.UUID] | None = None,
    terms: service.IssuingTerms | None = None,
) -> int:
    """Issue every due invoice (of ``account_ids``, or all) at ``now``; returns how many. What a test clock's advance
    runs for the accounts that follow it (pass the settings' terms: ``IssuingTerms.of(runtime.settings)``)."""
    return await service.issue_due_invoices(session, now=now, account_ids=account_ids, terms=terms)


async def run_issue_invoices(runtime: Runtime, *, lease_ttl: timedelta | None = None) -> int | None:
    now = runtime.clock()
    ttl = lease_ttl or timedelta(seconds=max(2 * runtime.settings.invoice_interval_seconds, 30))
    async with runtime.session_factory() as session:
        if not await acquire_lease(session, name=ISSUE_LEASE, holder=HOLDER, ttl=ttl, now=now):
            return None
        return await issue_due_invoices(session, now=now, terms=service.IssuingTerms.of(runtime.settings))


async def run_render_pdfs(runtime: Runtime) -> int:
    """Idempotent on any number of replicas: a PDF is stored insert-if-absent."""
    return await render_missing_pdfs(
        runtime.session_factory, issuer=runtime.settings.invoice_issuer, now=runtime.clock()
    )


ISSUE_INVOICES_JOB = ScheduledJob(
    "billing.invoices.issue", run_issue_invoices, lambda settings: settings.invoice_interval_seconds
)
RENDER_PDFS_JOB = ScheduledJob(
    "billing.invoices.render_pdfs", run_render_pdfs, lambda settings: settings.invoice_pdf_interval_seconds
)
