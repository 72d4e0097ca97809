"""The scheduled jobs, as the scheduler runs them: issue what is due (under a lease), then render the PDFs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from license_server.auth.tokens import Actor
from license_server.billing.invoices.jobs import ISSUE_INVOICES_JOB, RENDER_PDFS_JOB
from license_server.billing.invoices.models import Invoice, InvoicePdf
from license_server.runtime import Runtime
from license_server.scheduler import JOBS
from tests.billing.conftest import PlatformFactory, subscribe, tiny_plan
from tests.conftest import MovableClock

pytestmark = pytest.mark.usefixtures("backend")


async def _count(runtime: Runtime, model: type[Invoice] | type[InvoicePdf]) -> int:
    async with runtime.session_factory() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_the_jobs_issue_each_period_once_and_render_every_pdf(
    runtime: Runtime, make_platform: PlatformFactory, actor: Actor, clock: MovableClock
) -> None:
    assert ISSUE_INVOICES_JOB in JOBS
    assert RENDER_PDFS_JOB in JOBS
    clock.now = datetime(2026, 1, 31, 12, tzinfo=UTC)
    platform = await make_platform(catalogues=(tiny_plan("pro", {}, price="20"),))
    for external_id in ("a", "b", "c"):
        await subscribe(runtime, actor, platform, external_id, "pro", anchor=clock.now)

    assert await ISSUE_INVOICES_JOB.run(runtime) == 3
    assert await ISSUE_INVOICES_JOB.run(runtime) == 0
    assert await RENDER_PDFS_JOB.run(runtime) == 3
    assert await RENDER_PDFS_JOB.run(runtime) == 0
    clock.now = datetime(2026, 2, 28, 12, tzinfo=UTC)  # Jan 31 anchors clamp to Feb 28
    assert await ISSUE_INVOICES_JOB.run(runtime) == 3
    clock.advance(timedelta(days=1))
    assert await ISSUE_INVOICES_JOB.run(runtime) == 0
    assert await RENDER_PDFS_JOB.run(runtime) == 3
    assert (await _count(runtime, Invoice), await _count(runtime, InvoicePdf)) == (6, 6)
