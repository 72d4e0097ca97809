"""Admin routes for webhook endpoints, their deliveries, and the event log: parse, call one service, serialise."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, delete, get, patch, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from license_server.auth.guards import CurrentActor, needs
from license_server.auth.tokens import Permission
from license_server.dependencies import Db, Limit, Offset, RuntimeDep
from license_server.events import webhooks
from license_server.events.schemas import (
    EventOut,
    WebhookCreate,
    WebhookDeliveryOut,
    WebhookOut,
    WebhookUpdate,
    WebhookWithSecret,
    delivery_out,
    webhook_with_secret,
)
from license_server.events.service import EventType
from license_server.events.webhooks import DeliveryState
from license_server.schemas_common import Page

# Bounded to a 64-bit row id: a larger number is no id at all, and the database driver would overflow on it.
AfterId = Annotated[int | None, QueryParameter(ge=0, le=2**63 - 1, schema_extra={"minimum": 0, "maximum": 2**63 - 1})]
# "state" is a name Litestar reserves for the app state; the query parameter is still called state.
StateFilter = Annotated[DeliveryState | None, QueryParameter(name="state")]


class WebhookController(Controller):
    path = "/v1/admin/webhooks"
    tags = ["webhooks"]

    @post(
        "/",
        opt=needs(Permission.MANAGE_WEBHOOKS),
        summary="Create a webhook endpoint",
        description="The response is the only time the signing secret is shown. The endpoint receives the events "
        "emitted after its creation.",
    )
    async def create(
        self, data: JSONBody[WebhookCreate], db: Db, actor: CurrentActor, runtime: RuntimeDep
    ) -> WebhookWithSecret:
        created = await webhooks.create_endpoint(
            db,
            actor=actor,
            url=data.url,
            event_types=data.event_types,
            description=data.description,
            secret_box=runtime.webhook_secret_box,
            allowed_networks=runtime.settings.webhook_allowed_networks,
            clock=runtime.clock,
        )
        return webhook_with_secret(created)

    @get("/", opt=needs(Permission.READ), summary="List webhook endpoints")
    async def list_(self, db: Db, limit: Limit = 50, offset: Offset = 0) -> Page[WebhookOut]:
        rows, total = await webhooks.list_endpoints(db, limit=limit, offset=offset)
        return Page(items=[WebhookOut.model_validate(r) for r in rows], total=total, limit=limit, offset=offset)

    @get("/{endpoint_id:uuid}", opt=needs(Permission.READ), summary="Get a webhook endpoint")
    async def get_(self, db: Db, endpoint_id: FromPath[uuid.UUID]) -> WebhookOut:
        return WebhookOut.model_validate(await webhooks.get_endpoint(db, endpoint_id))

    @patch(
        "/{endpoint_id:uuid}",
        opt=needs(Permission.MANAGE_WEBHOOKS),
        summary="Update a webhook endpoint's URL, event types, description, or pause it",
    )
    async def update(
        self,
        data: JSONBody[WebhookUpdate],
        db: Db,
        actor: CurrentActor,
        runtime: RuntimeDep,
        endpoint_id: FromPath[uuid.UUID],
    ) -> WebhookOut:
        endpoint = await webhooks.update_endpoint(
            db,
            actor=actor,
            endpoint_id=endpoint_id,
            url=data.url,
            event_types=data.event_types,
            enabled=data.enabled,
            description=data.description,
            allowed_networks=runtime.settings.webhook_allowed_networks,
            clock=runtime.clock,
        )
        return WebhookOut.model_validate(endpoint)

    @delete(
        "/{endpoint_id:uuid}",
        opt=needs(Permission.MANAGE_WEBHOOKS),
        status_code=200,
        summary="Delete a webhook endpoint and its deliveries",
    )
    async def delete_(
        self, db: Db, actor: CurrentActor, runtime: RuntimeDep, endpoint_id: FromPath[uuid.UUID]
    ) -> WebhookOut:
        endpoint = await webhooks.delete_endpoint(db, actor=actor, endpoint_id=endpoint_id, clock=runtime.clock)
        return WebhookOut.model_validate(endpoint)

    @post(
        "/{endpoint_id:uuid}/rotate-secret",
        opt=needs(Permission.MANAGE_WEBHOOKS),
        status_code=200,
        summary="Replace the signing secret; the new one is shown only here",
        description="Every attempt from now on, retries of earlier events included, is signed with the new secret.",
    )
    async def rotate_secret(
        self, db: Db, actor: CurrentActor, runtime: RuntimeDep, endpoint_id: FromPath[uuid.UUID]
    ) -> WebhookWithSecret:
        rotated = await webhooks.rotate_secret(
            db, actor=actor, endpoint_id=endpoint_id, secret_box=runtime.webhook_secret_box, clock=runtime.clock
        )
        return webhook_with_secret(rotated)

    @get(
        "/{endpoint_id:uuid}/deliveries",
        opt=needs(Permission.READ),
        summary="List an endpoint's deliveries, newest event first",
    )
    async def deliveries(
        self,
        db: Db,
        endpoint_id: FromPath[uuid.UUID],
        limit: Limit = 50,
        offset: Offset = 0,
        delivery_state: StateFilter = None,
    ) -> Page[WebhookDeliveryOut]:
        views, total = await webhooks.list_deliveries(
            db, endpoint_id=endpoint_id, state=delivery_state, limit=limit, offset=offset
        )
        return Page(items=[delivery_out(v) for v in views], total=total, limit=limit, offset=offset)


class WebhookDeliveryController(Controller):
    path = "/v1/admin/webhook-deliveries"
    tags = ["webhooks"]

    @get("/", opt=needs(Permission.READ), summary="List deliveries to all endpoints, newest event first")
    async def list_(
        self,
        db: Db,
        limit: Limit = 50,
        offset: Offset = 0,
        delivery_state: StateFilter = None,
    ) -> Page[WebhookDeliveryOut]:
        views, total = await webhooks.list_deliveries(db, state=delivery_state, limit=limit, offset=offset)
        return Page(items=[delivery_out(v) for v in views], total=total, limit=limit, offset=offset)

    @post(
        "/{delivery_id:uuid}/redeliver",
        opt=needs(Permission.MANAGE_WEBHOOKS),
        status_code=200,
        summary="Send a delivery again now, whatever its state, with a fresh budget of attempts",
    )
    async def redeliver(
        self, db: Db, actor: CurrentActor, runtime: RuntimeDep, delivery_id: FromPath[uuid.UUID]
    ) -> WebhookDeliveryOut:
        view = await webhooks.redeliver(db, actor=actor, delivery_id=delivery_id, clock=runtime.clock)
        return delivery_out(view)


class EventController(Controller):
    path = "/v1/admin/events"
    tags = ["events"]

    @get(
        "/",
        opt=needs(Permission.READ),
        summary="The event log: newest first, or ascending after a cursor",
        description="Without `after_id`, events come newest first. With `after_id`, the events whose id is greater "
        "come oldest first, so a client can follow the log by passing the last id it has seen.",
    )
    async def list_(
        self,
        db: Db,
        limit: Limit = 50,
        offset: Offset = 0,
        type_: Annotated[EventType | None, QueryParameter(name="type")] = None,
        license_id: FromQuery[uuid.UUID | None] = None,
        after_id: AfterId = None,
    ) -> Page[EventOut]:
        rows, total = await webhooks.list_events(
            db, type=type_, license_id=license_id, after_id=after_id, limit=limit, offset=offset
        )
        return Page(items=[EventOut.model_validate(r) for r in rows], total=total, limit=limit, offset=offset)
