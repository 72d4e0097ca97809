"""The subscription lifecycle's admin routes: show one subscription, and its verbs as action routes."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromPath, JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.guards import CurrentActor, needs
from license_server.auth.tokens import Actor, Permission
from license_server.billing.controllers import billing_state, subscription_out
from license_server.billing.subscriptions import service
from license_server.billing.subscriptions.schemas import CancelIn, ChangePlanIn, PlanChangeOut, SubscriptionDetail
from license_server.dependencies import Db


async def subscription_detail(session: AsyncSession, state: service.SubscriptionState) -> SubscriptionDetail:
    out = subscription_out(state.view, state.now)
    changes = await service.plan_changes(session, state.view.subscription.id)
    return SubscriptionDetail(
        **out.model_dump(),
        pending_plan=state.pending_plan,
        status_reason=state.decision.reason,
        plan_changes=[PlanChangeOut.of(change) for change in changes],
    )


class SubscriptionsAdminController(Controller):
    """Staff: change plan, cancel, pause, resume, reactivate (each emits its subscription.* event once)."""

    path = "/v1/admin/billing/platforms/{platform_id:uuid}/subscriptions/{subscription_id:uuid}"
    tags = ["billing (admin)"]

    @get(
        "/",
        summary="One subscription: status, trial days left, pending plan, plan changes",
        opt=needs(Permission.BILLING_READ),
    )
    async def show(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        platform_id: FromPath[uuid.UUID],
        subscription_id: FromPath[uuid.UUID],
    ) -> SubscriptionDetail:
        state = await service.get_subscription(
            db, platform_id=platform_id, subscription_id=subscription_id, clock=billing_state(request).clock
        )
        return await subscription_detail(db, state)

    @post(
        "/actions/change-plan",
        summary="Upgrade at once (prorated) or schedule a downgrade for the period end",
        opt=needs(Permission.BILLING_WRITE),
    )
    async def change_plan(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        actor: CurrentActor,
        platform_id: FromPath[uuid.UUID],
        subscription_id: FromPath[uuid.UUID],
        data: JSONBody[ChangePlanIn],
    ) -> SubscriptionDetail:
        billing = billing_state(request)
        state = await service.change_plan(
            db,
            actor=actor,
            platform_id=platform_id,
            subscription_id=subscription_id,
            plan=data.plan,
            clock=billing.clock,
            state=billing,
        )
        return await subscription_detail(db, state)

    @post(
        "/actions/cancel",
        summary="Cancel at the period end (default) or at once",
        opt=needs(Permission.BILLING_WRITE),
    )
    async def cancel(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        actor: CurrentActor,
        platform_id: FromPath[uuid.UUID],
        subscription_id: FromPath[uuid.UUID],
        data: JSONBody[CancelIn],
    ) -> SubscriptionDetail:
        billing = billing_state(request)
        state = await service.cancel(
            db,
            actor=actor,
            platform_id=platform_id,
            subscription_id=subscription_id,
            at_period_end=data.at_period_end,
            clock=billing.clock,
            state=billing,
        )
        return await subscription_detail(db, state)

    @post(
        "/actions/pause",
        summary="Pause: consume and reserve answer subscription_paused",
        opt=needs(Permission.BILLING_WRITE),
    )
    async def pause(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        actor: CurrentActor,
        platform_id: FromPath[uuid.UUID],
        subscription_id: FromPath[uuid.UUID],
    ) -> SubscriptionDetail:
        return await _apply(service.pause, request, db, actor, platform_id, subscription_id)

    @post("/actions/resume", summary="Undo a pause", opt=needs(Permission.BILLING_WRITE))
    async def resume(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        actor: CurrentActor,
        platform_id: FromPath[uuid.UUID],
        subscription_id: FromPath[uuid.UUID],
    ) -> SubscriptionDetail:
        return await _apply(service.resume, request, db, actor, platform_id, subscription_id)

    @post(
        "/actions/reactivate",
        summary="Undo a cancellation (a canceled subscription starts a new term now)",
        opt=needs(Permission.BILLING_WRITE),
    )
    async def reactivate(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        actor: CurrentActor,
        platform_id: FromPath[uuid.UUID],
        subscription_id: FromPath[uuid.UUID],
    ) -> SubscriptionDetail:
        return await _apply(service.reactivate, request, db, actor, platform_id, subscription_id)


async def _apply(
    verb: Callable[..., Awaitable[service.SubscriptionState]],
    request: Request[Any, Any, Any],
    db: Db,
    actor: Actor,
    platform_id: uuid.UUID,
    subscription_id: uuid.UUID,
) -> SubscriptionDetail:
    """A verb that takes nothing but the subscription (pause, resume, reactivate), on the account's clock."""
    billing = billing_state(request)
    state = await verb(
        db, actor=actor, platform_id=platform_id, subscription_id=subscription_id, clock=billing.clock, state=billing
    )
    return await subscription_detail(db, state)
