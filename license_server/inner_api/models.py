"""What the inner API stores beside a license: credentials, and the state Dify keeps in its enterprise service.

The ``*Columns`` mixins are the shapes the vendor (a row per license: ``license_id`` in the key) and the edge (one
install per data directory: no license column) share, so the inner-API service's SQL is written once
(store.py ``ScopedInnerApiRecords``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Boolean, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from license_server.clock import utcnow
from license_server.db.base import Base, new_id

LICENSE_FK = "licenses.id"


class CredentialColumns:
    """A secret a Dify install sends as ``Enterprise-Api-Secret-Key``; only a digest of it is stored."""

    if TYPE_CHECKING:
        id: Any  # each side's own key: a UUID on the vendor, its text on the edge

    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    secret_hint: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class WorkspacePolicyColumns:
    """One workspace's policy, replacing the license's default workspace policy for that workspace."""

    workspace_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    allow_member_invite: Mapped[bool] = mapped_column(Boolean)
    allow_owner_transfer: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AppAccessModeColumns:
    """A web app's access mode; an app without a row is ``private``."""

    app_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    access_mode: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AppAllowedUserColumns:
    """A user allowed into a ``private`` web app."""

    app_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    added_at: Mapped[datetime] = mapped_column(default=utcnow)


class DefaultWorkspaceMemberColumns:
    """An account that joined the default workspace through the inner API (recorded once)."""

    workspace_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    joined_at: Mapped[datetime] = mapped_column(default=utcnow)


def _license_key() -> Mapped[uuid.UUID]:
    """The license a row belongs to: the first column of its primary key (``sort_order`` puts it before the
    mixin's columns)."""
    return mapped_column(ForeignKey(LICENSE_FK, ondelete="CASCADE"), primary_key=True, sort_order=-1)


class InnerApiCredential(CredentialColumns, Base):
    """A shared secret a Dify install sends as ``Enterprise-Api-Secret-Key``. Only its keyed hash is stored."""

    __tablename__ = "inner_api_credentials"
    __table_args__ = (Index("ix_inner_api_credentials_license_id", "license_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id, sort_order=-2)
    license_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(LICENSE_FK, ondelete="CASCADE"), sort_order=-1)
    created_by: Mapped[str] = mapped_column(String(200))
    revoked_by: Mapped[str | None] = mapped_column(String(200))

    def revoke(self, now: datetime, by: str) -> None:
        self.revoked_at, self.revoked_by = now, by


class WorkspacePolicyOverride(WorkspacePolicyColumns, Base):
    """One workspace's policy, replacing the license's default workspace policy for that workspace."""

    __tablename__ = "inner_api_workspace_policies"

    license_id: Mapped[uuid.UUID] = _license_key()


class AppAccessMode(AppAccessModeColumns, Base):
    """A web app's access mode; an app without a row is ``private``."""

    __tablename__ = "inner_api_app_access_modes"

    license_id: Mapped[uuid.UUID] = _license_key()


class AppAllowedUser(AppAllowedUserColumns, Base):
    """A user allowed into a ``private`` web app."""

    __tablename__ = "inner_api_app_allowed_users"

    license_id: Mapped[uuid.UUID] = _license_key()


class DefaultWorkspaceMember(DefaultWorkspaceMemberColumns, Base):
    """An account that joined the license's default workspace through the inner API (recorded once)."""

    __tablename__ = "inner_api_default_workspace_members"

    license_id: Mapped[uuid.UUID] = _license_key()
