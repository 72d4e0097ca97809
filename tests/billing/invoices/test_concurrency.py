"""Issuers racing (replicas whose lease lapsed, staff's issue-now beside the job): every due invoice is issued once,
and the numbers are 1..N without a gap, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from license_server.auth.tokens import Actor
from license_server.billing.invoices import service
from license_server.billing.invoices.models import Invoice
from license_server.runtime import Runtime
from tests.billing.conftest import PlatformFactory, subscribe, tiny_plan
from tests.conftest import MovableClock

pytestmark = pytest.mark.usefixtures("backend")

SUBSCRIPTIONS = 30


async def test_concurrent_issuers_issue_each_invoice_once_with_gapless_numbers(
    runtime: Runtime, make_platform: PlatformFactory, actor: Actor, clock: MovableClock
) -> None:
    clock.now = datetime(2026, 6, 1, tzinfo=UTC)
    platform = await make_platform(catalogues=(tiny_plan("pro", {}, price="9.99"),))
    for n in range(SUBSCRIPTIONS):
        await subscribe(runtime, actor, platform, f"ws-{n}", "pro", anchor=clock.now)

    async def issuer() -> int:
        async with runtime.session_factory() as session:
            return await service.issue_due_invoices(session, now=clock.now, batch=4)

    counts = await asyncio.gather(*(issuer() for _ in range(4)))
    assert sum(counts) == SUBSCRIPTIONS
    async with runtime.session_factory() as session:
        numbers = sorted((await session.scalars(select(Invoice.number))).all())
    assert numbers == [f"INV-{n:06d}" for n in range(1, SUBSCRIPTIONS + 1)]
