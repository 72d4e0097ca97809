"""Events (an append-only log with a total order), webhook endpoints and deliveries, and job leases."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, FetchedValue, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from license_server.clock import utcnow
from license_server.db.base import Base, BigIntId, new_id


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_type", "type"),
        Index("ix_events_license_id", "license_id"),
        Index("ix_events_txid_id", "txid", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    type: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    license_id: Mapped[uuid.UUID | None]
    activation_id: Mapped[uuid.UUID | None]
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # PostgreSQL: the id of the transaction that wrote it (a server default, pg_current_xact_id(), set by migration
    # 0013_fanout_xid), so fan-out can tell which events no open transaction can still add to (events/webhooks.py).
    # None on SQLite, whose one writer makes ids visible in order.
    txid: Mapped[int | None] = mapped_column(BigInteger, server_default=FetchedValue())


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str] = mapped_column(String(500), default="")
    # Event types this endpoint receives; empty means all.
    event_types: Mapped[list[str]] = mapped_column(default=list)
    # The signing secret ("whsec_" + base64), shown once at creation. Signing needs it back, so it is encrypted
    # (signing/encryption.py: AES-GCM under a key from keys/, bound to this row's id) rather than hashed.
    encrypted_secret: Mapped[str] = mapped_column(String(256))
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Events after this cursor have not yet been fanned out to this endpoint: on SQLite those with an id above
    # last_event_id; on PostgreSQL those after (last_event_txid, last_event_id) in (txid, id) order.
    last_event_id: Mapped[int] = mapped_column(BigIntId, default=0)
    last_event_txid: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint", "endpoint_id", "event_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(BigIntId, ForeignKey("events.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending | succeeded | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]


class JobLease(Base):
    """Which replica may run a job until when. Renewed by the holder; taken over once expired."""

    __tablename__ = "job_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime]
