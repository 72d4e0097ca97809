"""Request and response bodies of the webhooks and events API. No response but two carries a secret."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import Field

from license_server.events.service import EventType
from license_server.events.webhooks import DeliveryView, EndpointWithSecret, message_id
from license_server.schemas_common import Model

EVENT_TYPES_DESCRIPTION = "Event types to receive; empty means all. One of: " + ", ".join(t.value for t in EventType)
WebhookUrl = Annotated[
    str, Field(min_length=1, max_length=2048, description="Where deliveries are POSTed: an http(s) URL")
]
EventTypeName = Annotated[str, Field(max_length=64)]
EventTypes = Annotated[list[EventTypeName], Field(max_length=50, description=EVENT_TYPES_DESCRIPTION)]
Description = Annotated[str, Field(max_length=500)]


class WebhookCreate(Model):
    url: WebhookUrl
    event_types: EventTypes = Field(default_factory=list)
    description: Description = ""


class WebhookUpdate(Model):
    url: WebhookUrl | None = None
    event_types: EventTypes | None = None
    enabled: bool | None = Field(default=None, description="A disabled endpoint is paused; enabled, it catches up")
    description: Description | None = None


class WebhookOut(Model):
    id: uuid.UUID
    url: str
    description: str
    event_types: list[str] = Field(description="Event types it receives; empty means all")
    enabled: bool
    created_at: datetime
    last_event_id: int = Field(description="The newest event already fanned out to this endpoint")


class WebhookWithSecret(WebhookOut):
    secret: str = Field(description="The signing secret (whsec_ + base64). Shown only in this response; store it now.")


class WebhookDeliveryOut(Model):
    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: int
    event_type: str
    webhook_id: str = Field(description="The webhook-id header it is sent with, the same on every attempt")
    state: str = Field(description="pending | succeeded | failed")
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class EventOut(Model):
    id: int
    type: str
    occurred_at: datetime
    license_id: uuid.UUID | None
    activation_id: uuid.UUID | None
    data: dict[str, Any]


def webhook_with_secret(created: EndpointWithSecret) -> WebhookWithSecret:
    return WebhookWithSecret(**WebhookOut.model_validate(created.endpoint).model_dump(), secret=created.secret)


def delivery_out(view: DeliveryView) -> WebhookDeliveryOut:
    delivery = view.delivery
    return WebhookDeliveryOut(
        id=delivery.id,
        endpoint_id=delivery.endpoint_id,
        event_id=delivery.event_id,
        event_type=view.event_type,
        webhook_id=message_id(delivery.event_id),
        state=delivery.state,
        attempts=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        created_at=delivery.created_at,
        delivered_at=delivery.delivered_at,
    )
