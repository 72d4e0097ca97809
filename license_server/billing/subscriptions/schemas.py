"""Bodies of the subscription lifecycle's admin routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from pydantic import Field, StrictBool

from license_server.billing.money import Amount
from license_server.billing.schemas import PlanRef, SubscriptionOut
from license_server.billing.subscriptions.models import SubscriptionPlanChange
from license_server.schemas_common import Model


class ChangePlanIn(Model):
    plan: PlanRef = Field(description="Plan id or code: an upgrade applies at once (prorated), a downgrade at the end")


class CancelIn(Model):
    at_period_end: StrictBool = Field(default=True, description="false: cancel at once")


class PlanChangeOut(Model):
    id: uuid.UUID
    kind: str
    state: str
    from_plan_id: uuid.UUID
    to_plan_id: uuid.UUID
    requested_at: datetime
    effective_at: datetime
    period_start: datetime
    period_end: datetime
    currency: str
    days_left: int
    period_days: int
    credit: Amount = Field(description="The unused part of the old plan's fee, credited (upgrades)")
    charge: Amount = Field(description="The same part of the new plan's fee, charged (upgrades)")
    net: Decimal = Field(description="charge - credit: what the next invoice adds (negative: a credit)")

    @classmethod
    def of(cls, change: SubscriptionPlanChange) -> PlanChangeOut:
        return cls(
            id=change.id,
            kind=change.kind,
            state=change.state,
            from_plan_id=change.from_plan_id,
            to_plan_id=change.to_plan_id,
            requested_at=change.requested_at,
            effective_at=change.effective_at,
            period_start=change.period_start,
            period_end=change.period_end,
            currency=change.currency,
            days_left=change.days_left,
            period_days=change.period_days,
            credit=change.credit,
            charge=change.charge,
            net=change.charge - change.credit,
        )


class SubscriptionDetail(SubscriptionOut):
    pending_plan: str | None = Field(description="The plan a scheduled downgrade moves to at the period end")
    status_reason: str = Field(description="Why the status rule decides this status now (e.g. payment_failed)")
    plan_changes: list[PlanChangeOut]
