"""Usage state: gauges (total quotas), counters per period (monthly quotas), the history of every write,
reservations (holds) and usage events."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from license_server.clock import utcnow
from license_server.db.base import Base, BigIntId, DecimalText, new_id

ACCOUNT_FK = "billing_accounts.id"


class UsageGauge(Base):
    """How many of a thing the account has now (apps, members): set, incremented and decremented by the platform."""

    __tablename__ = "billing_usage_gauges"

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(ACCOUNT_FK, ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    used: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class UsageCounter(Base):
    """How many times a thing happened in one period; ``held`` is what standing reservations hold on top."""

    __tablename__ = "billing_usage_counters"

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(ACCOUNT_FK, ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    period_start: Mapped[datetime] = mapped_column(primary_key=True)
    period_end: Mapped[datetime]
    used: Mapped[int] = mapped_column(BigInteger, default=0)
    held: Mapped[int] = mapped_column(BigInteger, default=0)


class UsageOperation(StrEnum):
    CONSUME = "consume"
    COMMIT = "commit"
    GAUGE_INCREMENT = "gauge_increment"


class UsageRecord(Base):
    """One accepted usage write (its id is the ``history_id``), with the answer a replay of its key gets."""

    __tablename__ = "billing_usage_records"
    __table_args__ = (
        UniqueConstraint("account_id", "idempotency_key", name="uq_billing_usage_records_account_key"),
        Index("ix_billing_usage_records_account_created", "account_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(ACCOUNT_FK, ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(100))
    operation: Mapped[str] = mapped_column(String(32))
    amount: Mapped[int] = mapped_column(BigInteger)
    period_start: Mapped[datetime | None]  # None for gauges
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_digest: Mapped[str] = mapped_column(String(64))
    response: Mapped[dict[str, Any]] = mapped_column(default=dict)
    refunded_at: Mapped[datetime | None]
    refund_response: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReservationStatus(StrEnum):
    HELD = "held"
    COMMITTED = "committed"
    RELEASED = "released"
    EXPIRED = "expired"


class Reservation(Base):
    """A hold on monthly quota, taken before a long run and committed (or released) after it."""

    __tablename__ = "billing_reservations"
    __table_args__ = (
        UniqueConstraint("account_id", "request_id", name="uq_billing_reservations_account_request"),
        Index("ix_billing_reservations_status_expires_at", "status", "expires_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(ACCOUNT_FK, ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(100))
    amount: Mapped[int] = mapped_column(BigInteger)
    period_start: Mapped[datetime]
    request_id: Mapped[str] = mapped_column(String(200))
    request_digest: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[datetime]
    committed_amount: Mapped[int | None] = mapped_column(BigInteger)
    history_id: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class UsageEvent(Base):
    """A metered event with its dimensions and priced line items; idempotent by the platform's event id."""

    __tablename__ = "billing_usage_events"
    __table_args__ = (
        UniqueConstraint("account_id", "event_id", name="uq_billing_usage_events_account_event"),
        Index("ix_billing_usage_events_account_occurred", "account_id", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(ACCOUNT_FK, ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(200))
    occurred_at: Mapped[datetime]
    agent: Mapped[str | None] = mapped_column(String(200))
    app: Mapped[str | None] = mapped_column(String(200))
    line_items: Mapped[list[dict[str, Any]]] = mapped_column(default=list)
    cost: Mapped[Decimal] = mapped_column(DecimalText())  # exact at any scale on both engines
    request_digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
