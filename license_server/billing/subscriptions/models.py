"""Plan changes: one row per upgrade (applied at once, with its proration) or downgrade (applied at the period end).

The invoices side reads the applied upgrades' ``credit`` / ``charge`` as the next invoice's proration lines.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from license_server.clock import utcnow
from license_server.db.base import Base, DecimalText, new_id


class PlanChangeKind(StrEnum):
    UPGRADE = "upgrade"  # at once, prorated
    DOWNGRADE = "downgrade"  # at the period end, not prorated


class PlanChangeState(StrEnum):
    SCHEDULED = "scheduled"  # a downgrade waiting for the period end
    APPLIED = "applied"
    WITHDRAWN = "withdrawn"  # replaced by a later change, or the subscription ended first


class SubscriptionPlanChange(Base):
    __tablename__ = "billing_subscription_plan_changes"
    __table_args__ = (Index("ix_billing_subscription_plan_changes_subscription_id", "subscription_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    subscription_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("billing_subscriptions.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    from_plan_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("plans.id", ondelete="RESTRICT"))
    to_plan_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("plans.id", ondelete="RESTRICT"))
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    effective_at: Mapped[datetime]  # upgrades: the moment asked; downgrades: the period end
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]
    currency: Mapped[str] = mapped_column(String(3))
    # The proration of an upgrade (proration.py); zero for a downgrade.
    days_left: Mapped[int] = mapped_column(Integer, default=0)
    period_days: Mapped[int] = mapped_column(Integer, default=0)
    credit: Mapped[Decimal] = mapped_column(DecimalText())
    charge: Mapped[Decimal] = mapped_column(DecimalText())
    actor: Mapped[str] = mapped_column(String(200))
