"""The platform API (``/v1/billing``, platform secret) and the billing admin API. Thin: parse, call, serialise."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any

from litestar import Controller, MediaType, Request, delete, get, patch, post, put
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response.base import ASGIResponse
from litestar.serialization import encode_json
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.guards import bearer_secret, needs
from license_server.auth.tokens import Actor, Permission
from license_server.billing.accounts import service as accounts
from license_server.billing.accounts.models import BillingAccount, SubscriptionStatus
from license_server.billing.accounts.snapshots import AccountSnapshot, PlatformSnapshot, SubscriptionView
from license_server.billing.clocks.service import account_clock, billing_now, frozen_now_of
from license_server.billing.money import decimal_text
from license_server.billing.plans import service as plans
from license_server.billing.plans.terms import MAX_QUANTITY
from license_server.billing.schemas import (
    EXTERNAL_ID_PATTERN,
    AccountDetail,
    AccountOut,
    CatalogueImported,
    CommitIn,
    ConsumeIn,
    DataOut,
    EventsIn,
    FlexIn,
    GaugeChangeIn,
    GaugeSetIn,
    LimitsReport,
    LimitsReportOut,
    OverrideIn,
    OverrideOut,
    PlanBillingOut,
    PlatformCreate,
    PlatformCreated,
    PlatformOut,
    PlatformSecretCreated,
    PlatformSecretOut,
    PlatformUpdate,
    RefundIn,
    ReserveIn,
    SubscriptionCreate,
    SubscriptionOut,
    UsageRecordOut,
)
from license_server.billing.state import BillingState
from license_server.billing.subscriptions.service import term_containing
from license_server.billing.subscriptions.status import trial_days_remaining
from license_server.billing.usage import events as usage_events
from license_server.billing.usage import service as usage
from license_server.billing.usage.service import PricedEvent, request_digest
from license_server.errors import ValidationFailed
from license_server.json_bodies import check_json_body, json_typed_body
from license_server.schemas_common import problem_spec

# The names Litestar injects (declared as in license_server.dependencies, which sits above billing).
Db = NamedDependency[AsyncSession]
CurrentActor = NamedDependency[Actor]
Limit = Annotated[int, QueryParameter(ge=1, le=500)]
Offset = Annotated[int, QueryParameter(ge=0, le=10_000_000)]
BILLING_STATE_KEY = "billing"
PLATFORM_PREFIX = "/v1/billing"
_EXTERNAL_ID = re.compile(EXTERNAL_ID_PATTERN)
_KEY = re.compile(r"^[a-z][a-z0-9_.:-]{0,99}$")
PLATFORM_ERRORS = {
    401: problem_spec("Missing, unknown or revoked platform secret"),
    429: problem_spec("Too many failed authentications from this address; see Retry-After"),
}
_LIMIT_REFUSAL = problem_spec(
    "subscription_limit_reached: the write would pass the effective limit; `key`, `limit` and `used` say which"
)
_WRITE_ERRORS = {
    **PLATFORM_ERRORS,
    403: _LIMIT_REFUSAL,
    409: problem_spec("idempotency_key_reused (a replay with a different body), quota_kind_mismatch, ..."),
}


def _data(data: dict[str, Any], *, status_code: int = 200) -> ASGIResponse:
    """``{"data": ...}`` as a ready ASGI response, for the calls platforms make on every request or run: what the
    service built goes out as is, skipping DataOut's validation and Litestar's response conversion (a good share
    of each call's CPU). The route declares DataOut as its response for the schema."""
    return ASGIResponse(body=encode_json({"data": data}), status_code=status_code, media_type=MediaType.JSON)


def _data_spec(status_code: int, description: str) -> dict[int, ResponseSpec]:
    return {status_code: ResponseSpec(DataOut, description=description)}


def billing_state(connection: ASGIConnection[Any, Any, Any, Any]) -> BillingState:
    state: BillingState = connection.app.state[BILLING_STATE_KEY]
    return state


async def authenticate_platform(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """The platform API's guard: runs before the body is read, so a bad secret is 401 whatever the input."""
    address = connection.client.host if connection.client else None
    connection.state.platform = await accounts.authenticate_platform(
        billing_state(connection), bearer_secret(connection), address=address
    )


def checked_external_id(value: str) -> str:
    if not _EXTERNAL_ID.match(value):
        raise ValidationFailed("external_id must be 1-200 letters, digits and _.:@-", field="external_id")
    return value


def checked_key(value: str) -> str:
    if not _KEY.match(value):
        raise ValidationFailed("key must match ^[a-z][a-z0-9_.:-]{0,99}$", field="key")
    return value


async def account_of_request(
    request: Request[Any, Any, Any], external_id: FromPath[str]
) -> tuple[BillingState, AccountSnapshot]:
    state = billing_state(request)
    platform: PlatformSnapshot = request.state.platform
    return state, await accounts.account_snapshot(state, platform, checked_external_id(external_id))


def subscription_out(view: SubscriptionView, now: datetime) -> SubscriptionOut:
    sub = view.subscription
    if sub.current_period_start is not None and sub.current_period_end is not None:
        start, end = sub.current_period_start, sub.current_period_end
    else:  # a subscription the renewal job has not yet seen
        term = term_containing(sub.anchor_at, now, view.terms)
        start, end = term.start, term.end
    return SubscriptionOut(
        id=sub.id,
        plan=view.plan_code,
        status=SubscriptionStatus(sub.status),
        anchor_at=sub.anchor_at,
        trial_ends_at=sub.trial_ends_at,
        trial_days_remaining=trial_days_remaining(sub.trial_ends_at, now),
        canceled_at=sub.canceled_at,
        cancel_at=sub.cancel_at,
        paused_at=sub.paused_at,
        payment_failed_at=sub.payment_failed_at,
        payment_overdue_at=sub.payment_overdue_at,
        pending_plan_id=sub.pending_plan_id,
        current_period_start=start,
        current_period_end=end,
        created_at=sub.created_at,
    )


StatusFilter = Annotated[SubscriptionStatus | None, QueryParameter(name="status")]


async def _recorded(state: BillingState, snapshot: AccountSnapshot, priced_events: list[PricedEvent]) -> DataOut:
    result = await usage.record_events(state, snapshot, priced_events)
    return DataOut(data={**result, "cost": decimal_text(result["cost"])})


async def _events_fast_path(request: Request[Any, Any, Any]) -> DataOut | None:
    """``before_request`` of the events route, in place of the app's (``enforce_json_bodies``): a batch inside
    ``usage.events``' subset is decoded, priced and recorded from the raw body, and answered here. Anything else
    gets the app's body rules and returns None, so the route goes on as it would without this: ``EventsIn``
    validates and the handler prices, with the same problem responses as ever."""
    body = await json_typed_body(request)
    batch = usage_events.decode_batch(body)
    if batch is None:
        check_json_body(body)  # the app's body rules, as its own hook would have applied them
        return None
    state, snapshot = await account_of_request(request, request.path_params["external_id"])
    terms = snapshot.rate_card_terms
    priced_events = usage_events.price_batch(batch, terms.rate_card if terms else {}, billing_now(state, snapshot))
    if priced_events is None:
        return None
    return await _recorded(state, snapshot, priced_events)


class PlatformBillingController(Controller):
    """What a hosted platform's backend calls, per billing account (its ``external_id``)."""

    path = PLATFORM_PREFIX + "/accounts/{external_id:str}"
    tags = ["billing (platform API)"]
    guards = [authenticate_platform]

    @get(
        "/status",
        summary="Billing status (disabled, unset, active, inactive), the subscription's status and trial days left",
        responses=PLATFORM_ERRORS,
    )
    async def status(self, request: Request[Any, Any, Any], external_id: FromPath[str]) -> DataOut:
        state, snapshot = await account_of_request(request, external_id)
        return DataOut(data=usage.status_of(snapshot, billing_now(state, snapshot)))

    @get("/subscriptions", summary="The account's subscriptions with their plan", responses=PLATFORM_ERRORS)
    async def subscriptions(
        self, request: Request[Any, Any, Any], external_id: FromPath[str], db: Db, status_filter: StatusFilter = None
    ) -> DataOut:
        state, snapshot = await account_of_request(request, external_id)
        views = await accounts.list_subscriptions(
            db, account_id=snapshot.account_id, status=status_filter.value if status_filter else None
        )
        now = billing_now(state, snapshot)
        return DataOut(data={"subscriptions": [subscription_out(v, now).model_dump(mode="json") for v in views]})

    @get(
        "/limits",
        summary="The limits report (seed 004's Usage tab); an entry without `limit` is unlimited",
        responses={200: ResponseSpec(LimitsReportOut, description="The report"), **PLATFORM_ERRORS},
    )
    async def limits(self, request: Request[Any, Any, Any], external_id: FromPath[str]) -> ASGIResponse:
        state, snapshot = await account_of_request(request, external_id)
        # Served as built, not through LimitsReport: an unlimited entry has no `limit` key at all (not null); the
        # body is serialised once per cached report (an ASGI response skips Litestar's response conversion).
        cached = await usage.cached_limits_report(state, snapshot)
        return ASGIResponse(body=cached.body, media_type=MediaType.JSON)

    @get(
        "/limits/{key:str}/check",
        summary="Would `amount` more fit now? (read-only)",
        responses={**_data_spec(200, "Whether it fits, with used, limit and remaining"), **PLATFORM_ERRORS},
    )
    async def check(
        self,
        request: Request[Any, Any, Any],
        external_id: FromPath[str],
        key: FromPath[str],
        amount: Annotated[int, QueryParameter(ge=0, le=MAX_QUANTITY)] = 1,
    ) -> ASGIResponse:
        state, snapshot = await account_of_request(request, external_id)
        return _data(await usage.check(state, snapshot, key=checked_key(key), amount=amount))

    @post(
        "/usage/consume",
        summary="Check and consume monthly quota (idempotent by idempotency_key)",
        responses=_WRITE_ERRORS,
    )
    async def consume(
        self, request: Request[Any, Any, Any], external_id: FromPath[str], data: JSONBody[ConsumeIn]
    ) -> DataOut:
        state, snapshot = await account_of_request(request, external_id)
        return DataOut(
            data=await usage.consume(
                state, snapshot, key=data.key, amount=data.amount, idempotency_key=data.idempotency_key
            )
        )

    @post(
        "/usage/refund",
        summary="Reverse one consumption or commit, once",
        responses={
            **PLATFORM_ERRORS,
            404: problem_spec("No such history_id on this account"),
            409: problem_spec("not_refundable"),
        },
    )
    async def refund(
        self, request: Request[Any, Any, Any], external_id: FromPath[str], data: JSONBody[RefundIn]
    ) -> DataOut:
        state, snapshot = await account_of_request(request, external_id)
        return DataOut(data=await usage.refund(state, snapshot, history_id=data.history_id))

    @post(
        "/usage/reserve",
        summary="Hold monthly quota before a long run (idempotent by request_id)",
        responses={**_data_spec(201, "The hold (or, for a replay, the first answer)"), **_WRITE_ERRORS},
    )
    async def reserve(
        self, request: Request[Any, Any, Any], external_id: FromPath[str], data: JSONBody[ReserveIn]
    ) -> ASGIResponse:
        state, snapshot = await account_of_request(request, external_id)
        reservation = await usage.reserve(
            state,
            snapshot,
            key=data.key,
            amount=data.amount,
            request_id=data.request_id,
            ttl_seconds=data.ttl_seconds,
        )
        return _data(reservation, status_code=201)

    @post(
        "/usage/reservations/{request_id:str}/commit",
        summary="Turn a hold into usage of `actual`; the rest is freed",
        responses={
            **_data_spec(201, "The usage recorded (or, for a replay, the first answer)"),
            **PLATFORM_ERRORS,
            404: problem_spec("No reservation with this request_id"),
            409: problem_spec("reservation_closed (released or expired) or idempotency_key_reused"),
        },
    )
    async def commit(
        self,
        request: Request[Any, Any, Any],
        external_id: FromPath[str],
        request_id: FromPath[str],
        data: JSONBody[CommitIn],
    ) -> ASGIResponse:
        state, snapshot = await account_of_request(request, external_id)
        committed = await usage.commit(state, snapshot, request_id=request_id[:200], actual=data.actual)
        return _data(committed, status_code=201)

    @post(
        "/usage/reservations/{request_id:str}/release",
        summary="Free an uncommitted hold (idempotent; a no-op after commit)",
        responses={**PLATFORM_ERRORS, 404: problem_spec("No reservation with this request_id")},
    )
    async def release(
        self, request: Request[Any, Any, Any], external_id: FromPath[str], request_id: FromPath[str]
    ) -> DataOut:
        state, snapshot = await account_of_request(request, external_id)
        return DataOut(data=await usage.release(state, snapshot, request_id=request_id[:200]))

    @put(
        "/gauges/{key:str}",
        summary="Set a total quota's gauge (a reconciliation; never refused)",
        responses=_WRITE_ERRORS,
    )
    async def set_gauge(
        self,
        request: Request[Any, Any, Any],
        external_id: FromPath[str],
        key: FromPath[str],
        data: JSONBody[GaugeSetIn],
    ) -> DataOut:
        state, snapshot = await account_of_request(request, external_id)
        return DataOut(data=await usage.set_gauge(state, snapshot, key=checked_key(key), value=data.value))

    @post(
        "/gauges/{key:str}/increment",
        summary="A resource is created: checked against the limit",
        responses=_WRITE_ERRORS,
    )
    async def increment_gauge(
        self,
        request: Request[Any, Any, Any],
        external_id: FromPath[str],
        key: FromPath[str],
        data: JSONBody[GaugeChangeIn],
    ) -> DataOut:
        state, snapshot = await account_of_request(request, external_id)
        return DataOut(
            data=await usage.change_gauge(
                state, snapshot, key=checked_key(key), delta=data.amount, idempotency_key=data.idempotency_key
            )
        )

    @post("/gauges/{key:str}/decrement", summary="A resource is deleted (never below zero)", responses=_WRITE_ERRORS)
    async def decrement_gauge(
        self,
        request: Request[Any, Any, Any],
        external_id: FromPath[str],
        key: FromPath[str],
        data: JSONBody[GaugeChangeIn],
    ) -> DataOut:
        state, snapshot = await account_of_request(request, external_id)
        return DataOut(
            data=await usage.change_gauge(
                state, snapshot, key=checked_key(key), delta=-data.amount, idempotency_key=data.idempotency_key
            )
        )

    @post(
        "/events",
        summary="Record up to 1,000 usage events (idempotent by event id), priced by the plan's rate card",
        before_request=_events_fast_path,
        responses={
            **_WRITE_ERRORS,
            409: problem_spec("idempotency_key_reused: an event id was sent with another body"),
        },
    )
    async def events(
        self, request: Request[Any, Any, Any], external_id: FromPath[str], data: JSONBody[EventsIn]
    ) -> DataOut:
        state, snapshot = await account_of_request(request, external_id)
        now = billing_now(state, snapshot)
        priced_events = []
        for index, event in enumerate(data.events):
            body = event.model_dump(mode="json", exclude_none=True)
            try:
                priced, cost = usage.price_line_items(snapshot, body.get("line_items", []))
            except ValidationFailed as exc:
                raise ValidationFailed(
                    f"events.{index}: {exc.detail}", field=f"events.{index}", code=exc.code
                ) from None
            priced_events.append(
                PricedEvent(
                    event_id=event.id,
                    occurred_at=event.occurred_at or now,
                    agent=event.agent,
                    app=event.app,
                    line_items=priced,
                    cost=cost,
                    digest=request_digest(**body),
                )
            )
        return await _recorded(state, snapshot, priced_events)


# -- admin ---------------------------------------------------------------------------------------------------------
def _platform_out(platform: Any) -> PlatformOut:
    return PlatformOut.model_validate(platform)


def _account_out(account: BillingAccount) -> AccountOut:
    return AccountOut.model_validate(account)


class BillingAdminController(Controller):
    """Staff: plans' billing terms, platforms, accounts, subscriptions, overrides, flex, usage."""

    path = "/v1/admin/billing"
    tags = ["billing (admin)"]

    @post(
        "/plans/import",
        summary="Create or update plans (by code) from a catalogue",
        opt=needs(Permission.BILLING_WRITE),
    )
    async def import_plans(
        self, request: Request[Any, Any, Any], db: Db, actor: CurrentActor, data: JSONBody[plans.Catalogue]
    ) -> CatalogueImported:
        state = billing_state(request)
        result = await plans.import_catalogue(db, actor=actor, catalogue=data, clock=state.clock)
        await state.platforms_changed()
        return CatalogueImported(created=result.created, updated=result.updated, plans=[p.code for p in result.plans])

    @get("/plans", summary="Plans with their billing terms", opt=needs(Permission.BILLING_READ))
    async def list_plans(self, db: Db) -> list[PlanBillingOut]:
        return [PlanBillingOut.model_validate(p) for p in await plans.list_billing_plans(db)]

    @post("/platforms", summary="Register a platform; its secret is shown once", opt=needs(Permission.BILLING_WRITE))
    async def create_platform(
        self, request: Request[Any, Any, Any], db: Db, actor: CurrentActor, data: JSONBody[PlatformCreate]
    ) -> PlatformCreated:
        state = billing_state(request)
        created = await accounts.create_platform(
            db,
            actor=actor,
            hasher=state.hasher(),
            name=data.name,
            default_plan=data.default_plan,
            billing_enabled=data.billing_enabled,
            restrictive_defaults=data.restrictive_defaults,
            clock=state.clock,
        )
        return PlatformCreated(
            **_platform_out(created.platform).model_dump(), secret=created.secret, secret_id=created.secret_id
        )

    @get("/platforms", summary="Platforms", opt=needs(Permission.BILLING_READ))
    async def list_platforms(self, db: Db) -> list[PlatformOut]:
        return [_platform_out(p) for p in await accounts.list_platforms(db)]

    @get("/platforms/{platform_id:uuid}", summary="One platform", opt=needs(Permission.BILLING_READ))
    async def get_platform(self, db: Db, platform_id: FromPath[uuid.UUID]) -> PlatformOut:
        return _platform_out(await accounts.get_platform(db, platform_id))

    @patch(
        "/platforms/{platform_id:uuid}",
        summary="Rename, switch billing, default plan, restrictive defaults",
        opt=needs(Permission.BILLING_WRITE),
    )
    async def update_platform(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        actor: CurrentActor,
        platform_id: FromPath[uuid.UUID],
        data: JSONBody[PlatformUpdate],
    ) -> PlatformOut:
        state = billing_state(request)
        platform = await accounts.update_platform(
            db, actor=actor, platform_id=platform_id, changes=data.model_dump(exclude_unset=True), clock=state.clock
        )
        await state.platforms_changed()
        return _platform_out(platform)

    @get(
        "/platforms/{platform_id:uuid}/secrets",
        summary="The platform's secrets (never the secrets themselves)",
        opt=needs(Permission.BILLING_READ),
    )
    async def list_secrets(self, db: Db, platform_id: FromPath[uuid.UUID]) -> list[PlatformSecretOut]:
        return [PlatformSecretOut.model_validate(s) for s in await accounts.list_platform_secrets(db, platform_id)]

    @post(
        "/platforms/{platform_id:uuid}/secrets",
        summary="A new secret beside the live ones (rotation)",
        opt=needs(Permission.BILLING_WRITE),
    )
    async def add_secret(
        self, request: Request[Any, Any, Any], db: Db, actor: CurrentActor, platform_id: FromPath[uuid.UUID]
    ) -> PlatformSecretCreated:
        state = billing_state(request)
        secret, row = await accounts.add_platform_secret(
            db, actor=actor, hasher=state.hasher(), platform_id=platform_id, clock=state.clock
        )
        return PlatformSecretCreated(**PlatformSecretOut.model_validate(row).model_dump(), secret=secret)

    @delete(
        "/platforms/{platform_id:uuid}/secrets/{secret_id:uuid}",
        summary="Revoke a secret (at once in this process; within the cache window elsewhere)",
        status_code=200,
        opt=needs(Permission.BILLING_WRITE),
    )
    async def revoke_secret(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        actor: CurrentActor,
        platform_id: FromPath[uuid.UUID],
        secret_id: FromPath[uuid.UUID],
    ) -> PlatformSecretOut:
        state = billing_state(request)
        row = await accounts.revoke_platform_secret(
            db, actor=actor, platform_id=platform_id, secret_id=secret_id, clock=state.clock
        )
        await state.platforms_changed()
        return PlatformSecretOut.model_validate(row)

    @get(
        "/platforms/{platform_id:uuid}/accounts",
        summary="The platform's billing accounts",
        opt=needs(Permission.BILLING_READ),
    )
    async def list_accounts(
        self, db: Db, platform_id: FromPath[uuid.UUID], limit: Limit = 100, offset: Offset = 0
    ) -> list[AccountOut]:
        rows = await accounts.list_accounts(db, platform_id=platform_id, limit=limit, offset=offset)
        return [_account_out(a) for a in rows]

    @get(
        "/platforms/{platform_id:uuid}/accounts/{external_id:str}",
        summary="One account: status, subscriptions, overrides and its limits report",
        opt=needs(Permission.BILLING_READ),
    )
    async def get_account(
        self, request: Request[Any, Any, Any], db: Db, platform_id: FromPath[uuid.UUID], external_id: FromPath[str]
    ) -> AccountDetail:
        state = billing_state(request)
        platform = await accounts.get_platform(db, platform_id)
        account = await accounts.get_account(db, platform_id, checked_external_id(external_id))
        now = (await account_clock(db, account.id, state.clock))()
        snapshot = await accounts.load_snapshot(
            db, accounts.platform_snapshot(platform), account, test_now=await frozen_now_of(db, account.id)
        )
        report = await usage.limits_report(db, snapshot, now)
        return AccountDetail(
            **_account_out(account).model_dump(),
            status=snapshot.billing_status,
            subscriptions=[subscription_out(v, now) for v in snapshot.subscriptions],
            overrides=[OverrideOut.model_validate(o) for o in await accounts.list_overrides(db, account.id)],
            limits=LimitsReport.model_validate(report),
        )

    @post(
        "/platforms/{platform_id:uuid}/accounts/{external_id:str}/subscriptions",
        summary="Subscribe an account to a plan (the account is created if new)",
        opt=needs(Permission.BILLING_WRITE),
    )
    async def create_subscription(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        actor: CurrentActor,
        platform_id: FromPath[uuid.UUID],
        external_id: FromPath[str],
        data: JSONBody[SubscriptionCreate],
    ) -> SubscriptionOut:
        state = billing_state(request)
        view = await accounts.create_subscription(
            db,
            actor=actor,
            platform_id=platform_id,
            external_id=checked_external_id(external_id),
            plan=data.plan,
            trial_days=data.trial_days,
            anchor=data.anchor,
            test_clock_id=data.test_clock_id,
            clock=state.clock,
        )
        await state.account_changed(platform_id, external_id)
        return subscription_out(view, (await account_clock(db, view.subscription.account_id, state.clock))())

    @put(
        "/platforms/{platform_id:uuid}/accounts/{external_id:str}/overrides/{key:str}",
        summary="Override one limit of one account (null: unlimited)",
        opt=needs(Permission.BILLING_WRITE),
    )
    async def set_override(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        actor: CurrentActor,
        platform_id: FromPath[uuid.UUID],
        external_id: FromPath[str],
        key: FromPath[str],
        data: JSONBody[OverrideIn],
    ) -> OverrideOut:
        state = billing_state(request)
        row = await accounts.set_override(
            db,
            actor=actor,
            platform_id=platform_id,
            external_id=checked_external_id(external_id),
            key=checked_key(key),
            limit=data.limit,
            clock=state.clock,
        )
        await state.account_changed(platform_id, external_id)
        return OverrideOut.model_validate(row)

    @delete(
        "/platforms/{platform_id:uuid}/accounts/{external_id:str}/overrides/{key:str}",
        summary="Remove an override",
        status_code=200,
        opt=needs(Permission.BILLING_WRITE),
    )
    async def clear_override(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        actor: CurrentActor,
        platform_id: FromPath[uuid.UUID],
        external_id: FromPath[str],
        key: FromPath[str],
    ) -> dict[str, bool]:
        state = billing_state(request)
        removed = await accounts.clear_override(
            db,
            actor=actor,
            platform_id=platform_id,
            external_id=checked_external_id(external_id),
            key=checked_key(key),
            clock=state.clock,
        )
        await state.account_changed(platform_id, external_id)
        return {"removed": removed}

    @put(
        "/platforms/{platform_id:uuid}/accounts/{external_id:str}/flex",
        summary="Turn flex credits on or off for an account",
        opt=needs(Permission.BILLING_WRITE),
    )
    async def set_flex(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        actor: CurrentActor,
        platform_id: FromPath[uuid.UUID],
        external_id: FromPath[str],
        data: JSONBody[FlexIn],
    ) -> AccountOut:
        state = billing_state(request)
        account = await accounts.set_flex(
            db,
            actor=actor,
            platform_id=platform_id,
            external_id=checked_external_id(external_id),
            enabled=data.enabled,
            clock=state.clock,
        )
        await state.account_changed(platform_id, external_id)
        return _account_out(account)

    @get(
        "/platforms/{platform_id:uuid}/accounts/{external_id:str}/usage",
        summary="The account's accepted usage writes, newest first",
        opt=needs(Permission.BILLING_READ),
    )
    async def usage_history(
        self,
        db: Db,
        platform_id: FromPath[uuid.UUID],
        external_id: FromPath[str],
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> list[UsageRecordOut]:
        account = await accounts.get_account(db, platform_id, checked_external_id(external_id))
        rows = await usage.usage_history(db, account.id, limit=limit, offset=offset)
        return [
            UsageRecordOut(
                history_id=r.id,
                key=r.key,
                operation=r.operation,
                amount=r.amount,
                period_start=r.period_start,
                idempotency_key=r.idempotency_key,
                refunded_at=r.refunded_at,
                created_at=r.created_at,
            )
            for r in rows
        ]
