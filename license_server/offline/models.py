"""Offline bindings: which install key an air-gapped activation belongs to, and how far its usage chain reached."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from license_server.clock import utcnow
from license_server.db.base import Base, BigIntId, new_id


class OfflineBinding(Base):
    """One air-gapped install: an activation (the seat) bound to the install's Ed25519 key."""

    __tablename__ = "offline_bindings"
    __table_args__ = (Index("ix_offline_bindings_license_id", "license_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    activation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("activations.id", ondelete="CASCADE"), unique=True)
    license_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("licenses.id", ondelete="CASCADE"))
    fingerprint: Mapped[str] = mapped_column(String(256))
    install_key: Mapped[str] = mapped_column(String(64), unique=True)  # base64url raw Ed25519 public key
    request_nonce: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    files_issued: Mapped[int] = mapped_column(Integer, default=0)
    last_file_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The newest imported usage report: its sequence number and hash (0 and the genesis hash before the first).
    usage_seq: Mapped[int] = mapped_column(Integer, default=0)
    usage_head: Mapped[str] = mapped_column(String(64))
    usage_imported_at: Mapped[datetime | None]


class OfflineUsageImport(Base):
    """One imported link of an install's usage chain."""

    __tablename__ = "offline_usage_imports"
    __table_args__ = (UniqueConstraint("binding_id", "seq", name="uq_offline_usage_imports_binding_seq"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    binding_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("offline_bindings.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    report_hash: Mapped[str] = mapped_column(String(64))
    report_created_at: Mapped[datetime]
    measurements: Mapped[list[dict[str, Any]]] = mapped_column(default=list)  # the report's, as exported
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)
    imported_by: Mapped[str] = mapped_column(String(200))
    # What the import answered ({"usage": {...}, "over_limit": [...]}), answered again to a replay of the same file.
    # None for imports made before it was kept: a replay of those answers the usage as it is now.
    answer: Mapped[dict[str, Any] | None]
