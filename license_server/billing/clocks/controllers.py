"""Test clocks over the admin API: create, list, show, attach accounts, advance. Thin: parse, call, serialise."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromPath, JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.guards import CurrentActor, needs
from license_server.auth.tokens import Permission
from license_server.billing.clocks import jobs, service
from license_server.billing.clocks.models import TestClock
from license_server.billing.clocks.schemas import ClockAdvance, ClockAdvanced, ClockAttach, ClockCreate, ClockOut
from license_server.billing.controllers import billing_state
from license_server.dependencies import Db


async def clock_out(session: AsyncSession, clock: TestClock) -> ClockOut:
    accounts = await service.clock_accounts(session, clock.id)
    return ClockOut(
        id=clock.id,
        name=clock.name,
        frozen_now=clock.frozen_now,
        created_at=clock.created_at,
        created_by=clock.created_by,
        accounts=[account.external_id for account in accounts],
    )


class TestClocksAdminController(Controller):
    """Staff attach accounts to a test clock and advance it: trials end, periods roll, quotas reset, credits expire."""

    __test__ = False  # a controller, not a pytest test class
    path = "/v1/admin/billing/test-clocks"
    tags = ["billing (admin)"]

    @post("/", summary="Create a test clock (frozen at `frozen_now`, default now)", opt=needs(Permission.BILLING_WRITE))
    async def create(
        self, request: Request[Any, Any, Any], db: Db, actor: CurrentActor, data: JSONBody[ClockCreate]
    ) -> ClockOut:
        clock = await service.create_clock(
            db, actor=actor, name=data.name, frozen_now=data.frozen_now, clock=billing_state(request).clock
        )
        return await clock_out(db, clock)

    @get("/", summary="Test clocks", opt=needs(Permission.BILLING_READ))
    async def list_clocks(self, db: Db) -> list[ClockOut]:
        return [await clock_out(db, clock) for clock in await service.list_clocks(db)]

    @get("/{clock_id:uuid}", summary="One test clock with its accounts", opt=needs(Permission.BILLING_READ))
    async def show(self, db: Db, clock_id: FromPath[uuid.UUID]) -> ClockOut:
        return await clock_out(db, await service.get_clock(db, clock_id))

    @post(
        "/{clock_id:uuid}/attach",
        summary="Attach accounts (one or a group) to the clock: their dates follow it from now on",
        opt=needs(Permission.BILLING_WRITE),
    )
    async def attach(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        actor: CurrentActor,
        clock_id: FromPath[uuid.UUID],
        data: JSONBody[ClockAttach],
    ) -> ClockOut:
        state = billing_state(request)
        await service.attach_accounts(
            db,
            actor=actor,
            clock_id=clock_id,
            platform_id=data.platform_id,
            external_ids=data.external_ids,
            clock=state.clock,
        )
        state.forget_platforms()  # the attached accounts' cached snapshots carried real time
        return await clock_out(db, await service.get_clock(db, clock_id))

    @post(
        "/{clock_id:uuid}/advance",
        summary="Move the clock forward, running the scheduled jobs at every boundary it passes",
        opt=needs(Permission.BILLING_WRITE),
    )
    async def advance(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        actor: CurrentActor,
        clock_id: FromPath[uuid.UUID],
        data: JSONBody[ClockAdvance],
    ) -> ClockAdvanced:
        result = await jobs.advance_clock(
            db,
            state=billing_state(request),
            actor=actor,
            clock_id=clock_id,
            to=data.to,
            months=data.months,
            days=data.days,
        )
        out = await clock_out(db, result.clock)
        return ClockAdvanced(**out.model_dump(), steps=result.steps)
