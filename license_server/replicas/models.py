"""Counters every replica updates: UNLOGGED on PostgreSQL (created so by migration 0012_shared_state), since losing
them in a database crash only forgets the last minute's counts. Unused on SQLite, where one process counts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from license_server.db.base import Base


class SharedRateWindow(Base):
    """Requests counted per limiter key and fixed window (``bucket`` = epoch seconds // window): the current window
    and the one before make the sliding estimate (replicas/limits.py)."""

    __tablename__ = "shared_rate_windows"
    __table_args__ = (Index("ix_shared_rate_windows_bucket", "bucket"),)

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    bucket: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hits: Mapped[int] = mapped_column(Integer)


class SharedAuthFailure(Base):
    """A different wrong secret from one address and credential kind (by a keyed fingerprint, never the secret),
    with the time it was last tried."""

    __tablename__ = "shared_auth_failures"
    __table_args__ = (Index("ix_shared_auth_failures_failed_at", "failed_at"),)

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary(16), primary_key=True)
    failed_at: Mapped[datetime]
