"""What the inner API stores beside a license: credentials, and the state Dify keeps in its enterprise service."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from license_server.clock import utcnow
from license_server.db.base import Base, new_id

LICENSE_FK = "licenses.id"


class InnerApiCredential(Base):
    """A shared secret a Dify deployment sends as ``Enterprise-Api-Secret-Key``. Only its keyed hash is stored."""

    __tablename__ = "inner_api_credentials"
    __table_args__ = (Index("ix_inner_api_credentials_license_id", "license_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    license_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(LICENSE_FK, ondelete="CASCADE"))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    secret_hint: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(String(200))

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def revoke(self, now: datetime, by: str) -> None:
        self.revoked_at, self.revoked_by = now, by


class WorkspacePolicyOverride(Base):
    """One workspace's policy, replacing the license's default workspace policy for that workspace."""

    __tablename__ = "inner_api_workspace_policies"

    license_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(LICENSE_FK, ondelete="CASCADE"), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    allow_member_invite: Mapped[bool] = mapped_column(Boolean)
    allow_owner_transfer: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AppAccessMode(Base):
    """A web app's access mode; an app without a row is ``private``."""

    __tablename__ = "inner_api_app_access_modes"

    license_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(LICENSE_FK, ondelete="CASCADE"), primary_key=True)
    app_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    access_mode: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AppAllowedUser(Base):
    """A user allowed into a ``private`` web app."""

    __tablename__ = "inner_api_app_allowed_users"

    license_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(LICENSE_FK, ondelete="CASCADE"), primary_key=True)
    app_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    added_at: Mapped[datetime] = mapped_column(default=utcnow)


class DefaultWorkspaceMember(Base):
    """An account that joined the license's default workspace through the inner API (recorded once)."""

    __tablename__ = "inner_api_default_workspace_members"

    license_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(LICENSE_FK, ondelete="CASCADE"), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    joined_at: Mapped[datetime] = mapped_column(default=utcnow)
