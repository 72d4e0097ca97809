"""Platforms (with their secrets), billing accounts, subscriptions and per-account overrides."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from license_server.clock import utcnow
from license_server.db.base import Base, new_id


class SubscriptionStatus(StrEnum):
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    PAUSED = "paused"
    CANCELED = "canceled"


# Limits come from these subscriptions only (seed 004; a trial counts as active).
ACTIVE_STATUSES = frozenset({SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE})
# While the account's only standing subscriptions are in these, consume and reserve are refused (runs paused).
BLOCKING_STATUSES = (SubscriptionStatus.PAST_DUE, SubscriptionStatus.PAUSED)


class BillingPlatform(Base):
    """One hosted product of the vendor (e.g. "Dify Cloud"); its backend calls the platform API."""

    __tablename__ = "billing_platforms"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    billing_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # An account seen for the first time is created on this plan; None: it starts with the restrictive defaults.
    default_plan_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("plans.id", ondelete="RESTRICT"))
    # Limits of accounts without an active subscription: key -> limit; keys not listed are 0.
    restrictive_defaults: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class PlatformSecret(Base):
    """A platform's bearer secret. Only its keyed hash is stored; several may be live during a rotation."""

    __tablename__ = "billing_platform_secrets"
    __table_args__ = (Index("ix_billing_platform_secrets_platform_id", "platform_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    platform_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("billing_platforms.id", ondelete="CASCADE"))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    secret_hint: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(String(200))


class BillingAccount(Base):
    """The unit that is billed: a workspace / organization of the platform, named by the platform's own id."""

    __tablename__ = "billing_accounts"
    __table_args__ = (
        UniqueConstraint("platform_id", "external_id", name="uq_billing_accounts_platform_external"),
        Index("ix_billing_accounts_created_at_id", "created_at", "id"),  # the console's keyset list
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    platform_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("billing_platforms.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(200))
    customer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    # Flex credits (negative balance billed in arrears) are off until staff turn them on (seed 003).
    flex_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Subscription(Base):
    """An account on a plan. Monthly quota periods are anchored at ``anchor_at``."""

    __tablename__ = "billing_subscriptions"
    __table_args__ = (
        Index("ix_billing_subscriptions_account_id", "account_id"),
        Index("ix_billing_subscriptions_status", "status"),  # the console's "past due" on the dashboard
        Index("ix_billing_subscriptions_current_period_end", "current_period_end"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("billing_accounts.id", ondelete="CASCADE"))
    plan_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("plans.id", ondelete="RESTRICT"))
    status: Mapped[str] = mapped_column(String(16))
    anchor_at: Mapped[datetime]
    trial_ends_at: Mapped[datetime | None]
    canceled_at: Mapped[datetime | None]  # when the cancellation took effect
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The lifecycle's facts (billing/subscriptions/status.py decides ``status`` from them). The current term: a month,
    # or twelve on a yearly plan, from the anchor; the renewal job moves it across each end it passes.
    current_period_start: Mapped[datetime | None]
    current_period_end: Mapped[datetime | None]
    cancel_at: Mapped[datetime | None]  # a cancellation takes effect then: the period end, or the moment asked
    paused_at: Mapped[datetime | None]
    payment_failed_at: Mapped[datetime | None]  # the latest payment failed and nothing was paid since
    # An unpaid amount (an issued invoice) is overdue from then: its due date plus the grace, fixed when it was
    # recorded (subscriptions.service.record_payment_due), so the status rule needs no settings.
    payment_overdue_at: Mapped[datetime | None]
    # A downgrade waits here for the period end, where the renewal job applies it.
    pending_plan_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("plans.id", ondelete="SET NULL"))
    # The trial end a subscription.trial_will_end event was emitted for (once per trial end, even if it moves).
    trial_notice_for: Mapped[datetime | None]

    def is_active(self, now: datetime) -> bool:
        """Active or trialing; a trial past its end no longer counts until the renewal job has ended it."""
        if self.status == SubscriptionStatus.TRIALING:
            return self.trial_ends_at is None or now < self.trial_ends_at
        return self.status == SubscriptionStatus.ACTIVE

    def is_standing(self) -> bool:
        """Not canceled: its plan still sets the account's limits and anchors its periods. Past due and paused
        subscriptions stand too (runs are refused, nothing is taken away); a trial past its end stands until the
        renewal job ends it (to active, or past due)."""
        return self.status != SubscriptionStatus.CANCELED


class LimitOverride(Base):
    """Staff's explicit limit for one key of one account; wins over everything else (``limit`` None: unlimited)."""

    __tablename__ = "billing_limit_overrides"

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("billing_accounts.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    limit: Mapped[int | None] = mapped_column("limit_value", BigInteger)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(200))
