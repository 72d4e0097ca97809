"""Activations and usage reports."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from license_server.clock import utcnow
from license_server.db.base import Base, BigIntId, new_id


class Activation(Base):
    """One deployment holding one seat of a license, identified by its fingerprint."""

    __tablename__ = "activations"
    __table_args__ = (
        # One live activation per fingerprint and license; deactivated rows stay for the record.
        Index(
            "uq_activations_live_fingerprint",
            "license_id",
            "fingerprint",
            unique=True,
            sqlite_where=text("deactivated_at IS NULL"),
            postgresql_where=text("deactivated_at IS NULL"),
        ),
        Index("ix_activations_license_id", "license_id"),
        Index("ix_activations_heartbeat_deadline", "heartbeat_deadline"),
        # The sweep's way to the live activations that went quiet, without passing the lost and deactivated ones.
        Index(
            "ix_activations_live_heartbeat_deadline",
            "heartbeat_deadline",
            sqlite_where=text("lost_at IS NULL AND deactivated_at IS NULL"),
            postgresql_where=text("lost_at IS NULL AND deactivated_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    license_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("licenses.id", ondelete="CASCADE"))
    fingerprint: Mapped[str] = mapped_column(String(256))
    hostname: Mapped[str | None] = mapped_column(String(255))
    product_version: Mapped[str | None] = mapped_column(String(64))
    extra_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_hint: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    # last_seen_at + the license's heartbeat window: the sweep compares it with now, set-based.
    heartbeat_deadline: Mapped[datetime]
    lost_at: Mapped[datetime | None]
    sweep_mark: Mapped[int | None] = mapped_column(BigIntId)  # which sweep marked it lost, to emit exactly one event
    deactivated_at: Mapped[datetime | None]
    deactivated_by: Mapped[str | None] = mapped_column(String(200))

    @property
    def is_live(self) -> bool:
        return self.deactivated_at is None


class UsageReport(Base):
    """What a deployment measured. The latest-measured report per activation is its current usage."""

    __tablename__ = "usage_reports"
    __table_args__ = (
        UniqueConstraint("activation_id", "idempotency_key", name="uq_usage_reports_idempotency"),
        Index("ix_usage_reports_activation_measured", "activation_id", "measured_at"),
        Index("ix_usage_reports_license_id", "license_id"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    activation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("activations.id", ondelete="CASCADE"))
    license_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("licenses.id", ondelete="CASCADE"))
    idempotency_key: Mapped[str] = mapped_column(String(128))
    measured_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    seats_used: Mapped[int] = mapped_column(Integer)
    workspace_count: Mapped[int] = mapped_column(Integer)
    max_members: Mapped[int] = mapped_column(Integer)
    workspaces: Mapped[list[dict[str, Any]]] = mapped_column(default=list)
