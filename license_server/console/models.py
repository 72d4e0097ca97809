"""Staff users of the console and their server-side sessions (in the database, so any replica serves them)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from license_server.clock import utcnow
from license_server.db.base import Base, new_id


class StaffUser(Base):
    __tablename__ = "staff_users"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    # Stored lower-cased: one person, one account, however the address is typed.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    # An Argon2id hash in PHC string format (parameters and salt inside), never the password.
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disabled_at: Mapped[datetime | None]

    @property
    def is_disabled(self) -> bool:
        return self.disabled_at is not None


class StaffSession(Base):
    __tablename__ = "staff_sessions"
    __table_args__ = (Index("ix_staff_sessions_staff_user_id", "staff_user_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    staff_user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"))
    # A keyed hash of the cookie's secret: a copy of the database cannot be replayed as a cookie.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]

    def is_live(self, now: datetime, idle_limit_seconds: int) -> bool:
        return (
            self.revoked_at is None
            and now < self.expires_at
            and (now - self.last_seen_at).total_seconds() < idle_limit_seconds
        )
