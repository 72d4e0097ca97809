"""Emitting domain events: one row in the append-only ``events`` log, in the caller's transaction.

Event types are a closed list, so a typo cannot create an event nobody subscribes to.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from license_server.clock import Clock, utcnow
from license_server.events.models import Event


class EventType(StrEnum):
    LICENSE_ACTIVATED = "license.activated"
    LICENSE_EXPIRING_SOON = "license.expiring_soon"
    LICENSE_EXPIRED = "license.expired"
    LICENSE_LOST = "license.lost"
    LICENSE_RECOVERED = "license.recovered"
    LICENSE_SUSPENDED = "license.suspended"
    LICENSE_REINSTATED = "license.reinstated"
    LICENSE_REVOKED = "license.revoked"
    LICENSE_RENEWED = "license.renewed"
    ACTIVATION_CREATED = "activation.created"
    ACTIVATION_DEACTIVATED = "activation.deactivated"
    ACTIVATION_LOST = "activation.lost"
    USAGE_OVER_LIMIT = "usage.over_limit"
    INVOICE_ISSUED = "invoice.issued"
    INVOICE_PAID = "invoice.paid"
    INVOICE_VOIDED = "invoice.voided"
    PAYMENT_FAILED = "payment.failed"
    SUBSCRIPTION_TRIAL_WILL_END = "subscription.trial_will_end"
    SUBSCRIPTION_TRIAL_ENDED = "subscription.trial_ended"
    SUBSCRIPTION_PAST_DUE = "subscription.past_due"
    SUBSCRIPTION_RENEWED = "subscription.renewed"
    SUBSCRIPTION_PAUSED = "subscription.paused"
    SUBSCRIPTION_RESUMED = "subscription.resumed"
    SUBSCRIPTION_CANCELED = "subscription.canceled"
    SUBSCRIPTION_CANCEL_SCHEDULED = "subscription.cancel_scheduled"
    SUBSCRIPTION_REACTIVATED = "subscription.reactivated"
    SUBSCRIPTION_PLAN_CHANGED = "subscription.plan_changed"
    SUBSCRIPTION_DOWNGRADE_SCHEDULED = "subscription.downgrade_scheduled"


def emit_event(
    session: AsyncSession,
    *,
    type: EventType,
    license_id: uuid.UUID | None = None,
    activation_id: uuid.UUID | None = None,
    data: dict[str, Any] | None = None,
    clock: Clock = utcnow,
) -> Event:
    event = Event(
        type=type.value, occurred_at=clock(), license_id=license_id, activation_id=activation_id, data=data or {}
    )
    session.add(event)
    return event
