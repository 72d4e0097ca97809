"""Request and response bodies of the platform API (``/v1/billing``) and the billing admin API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictInt, model_validator

from license_server.billing.accounts.models import SubscriptionStatus
from license_server.billing.money import Amount
from license_server.billing.plans.terms import MAX_QUANTITY, Count, QuotaKey
from license_server.schemas_common import Model, UTCTimestamp

EXTERNAL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,199}$"
ExternalId = Annotated[str, Field(pattern=EXTERNAL_ID_PATTERN)]
IdempotencyKey = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")]
Quantity = Annotated[StrictInt, Field(ge=1, le=MAX_QUANTITY)]
Dimension = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")]
MAX_EVENTS_PER_BATCH = 1000
MAX_TTL_SECONDS = 7 * 86400


# -- platform API ------------------------------------------------------------------------------------------------
class ConsumeIn(Model):
    key: QuotaKey
    amount: Quantity = 1
    idempotency_key: IdempotencyKey


class RefundIn(Model):
    history_id: uuid.UUID


class ReserveIn(Model):
    key: QuotaKey
    amount: Quantity = 1
    request_id: IdempotencyKey
    ttl_seconds: Annotated[StrictInt, Field(ge=1, le=MAX_TTL_SECONDS)] = 900


class CommitIn(Model):
    actual: Count


class GaugeSetIn(Model):
    value: Count


class GaugeChangeIn(Model):
    amount: Quantity = 1
    idempotency_key: IdempotencyKey | None = None


class LineItemIn(Model):
    """A cost (``cost``), or a raw quantity (``quantity``) that the plan's rate card prices (``type:name``)."""

    type: Literal["llm", "tool", "storage"]
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,99}$")]
    quantity: Amount | None = None
    cost: Amount | None = None

    @model_validator(mode="after")
    def _cost_or_quantity(self) -> LineItemIn:
        if (self.quantity is None) == (self.cost is None):
            raise ValueError("give exactly one of cost and quantity")
        return self


class EventIn(Model):
    id: IdempotencyKey
    occurred_at: UTCTimestamp | None = None
    agent: Dimension | None = None
    app: Dimension | None = None
    line_items: list[LineItemIn] = Field(default_factory=list, max_length=100)


class EventsIn(Model):
    events: list[EventIn] = Field(min_length=1, max_length=MAX_EVENTS_PER_BATCH)


class DataOut(Model):
    """Every platform API answer is ``{"data": ...}`` (seed 004's shape)."""

    data: dict[str, Any]


class LimitEntry(Model):
    key: str
    group: Literal["total", "monthly"]
    used: int
    held: int | None = None
    limit: int | None = Field(default=None, description="Absent: unlimited")
    remaining: int | None = None


class LimitsReport(Model):
    plan: str | None
    status: str
    subscription_status: SubscriptionStatus | None = None
    trial_ends_at: datetime | None = None
    trial_days_remaining: int | None = None
    period_start: datetime
    period_end: datetime
    limits: list[LimitEntry]


class LimitsReportOut(Model):
    data: LimitsReport


# -- admin API ---------------------------------------------------------------------------------------------------
Name = Annotated[str, Field(min_length=1, max_length=200)]
PlanRef = Annotated[str, Field(min_length=1, max_length=64)]
RestrictiveDefaults = Annotated[dict[QuotaKey, Count], Field(max_length=200)]


class PlatformCreate(Model):
    name: Name
    default_plan: PlanRef | None = None
    billing_enabled: StrictBool = True
    restrictive_defaults: RestrictiveDefaults | None = Field(
        default=None, description="Limits without an active subscription; default: seed 004's (1 app, 1 KB, 0 else)"
    )


class PlatformUpdate(Model):
    name: Name | None = None
    default_plan: PlanRef | None = None
    billing_enabled: StrictBool | None = None
    restrictive_defaults: RestrictiveDefaults | None = None


class PlatformOut(Model):
    id: uuid.UUID
    name: str
    billing_enabled: bool
    default_plan_id: uuid.UUID | None
    restrictive_defaults: dict[str, int]
    created_at: datetime
    updated_at: datetime


class PlatformCreated(PlatformOut):
    secret: str = Field(description="The platform secret. Shown only in this response; store it now.")
    secret_id: uuid.UUID


class PlatformSecretOut(Model):
    id: uuid.UUID
    secret_hint: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None


class PlatformSecretCreated(PlatformSecretOut):
    secret: str = Field(description="Shown only in this response")


class SubscriptionCreate(Model):
    plan: PlanRef
    trial_days: Annotated[StrictInt, Field(ge=0, le=365)] | None = None
    anchor: UTCTimestamp | None = Field(default=None, description="Period anchor; default: now")
    test_clock_id: uuid.UUID | None = Field(
        default=None, description="Attach the account to this test clock first: the subscription starts on its time"
    )


class SubscriptionOut(Model):
    id: uuid.UUID
    plan: str
    status: SubscriptionStatus
    anchor_at: datetime
    trial_ends_at: datetime | None
    trial_days_remaining: int | None = Field(description="Whole days left in the trial (0: over); null: no trial")
    canceled_at: datetime | None
    cancel_at: datetime | None = Field(description="A cancellation takes effect then (the period end, or at once)")
    paused_at: datetime | None
    payment_failed_at: datetime | None
    payment_overdue_at: datetime | None
    pending_plan_id: uuid.UUID | None = Field(description="A downgrade scheduled for the period end")
    current_period_start: datetime
    current_period_end: datetime
    created_at: datetime


class OverrideIn(Model):
    limit: Count | None = Field(description="null: unlimited")


class OverrideOut(Model):
    key: str
    limit: int | None
    updated_at: datetime
    updated_by: str


class FlexIn(Model):
    enabled: StrictBool


class AccountOut(Model):
    id: uuid.UUID
    platform_id: uuid.UUID
    external_id: str
    customer_id: uuid.UUID | None
    flex_enabled: bool
    created_at: datetime


class AccountDetail(AccountOut):
    status: str
    subscriptions: list[SubscriptionOut]
    overrides: list[OverrideOut]
    limits: LimitsReport


class UsageRecordOut(Model):
    history_id: uuid.UUID
    key: str
    operation: str
    amount: int
    period_start: datetime | None
    idempotency_key: str | None
    refunded_at: datetime | None
    created_at: datetime


class PlanBillingOut(Model):
    id: uuid.UUID
    code: str
    name: str
    billing: dict[str, Any]


class CatalogueImported(Model):
    created: list[str]
    updated: list[str]
    plans: list[str]
