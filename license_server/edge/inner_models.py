"""The edge's inner-API state, in its own SQLite file: what the vendor keeps per license, kept per install here.

Declared on ``EdgeBase``, so ``prepare`` creates these tables with the rest of the edge's schema. No license id
column: an edge serves one license file, and its data directory belongs to that install.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from license_server.edge.store import EdgeBase


class EdgeInnerCredential(EdgeBase):
    """A secret the local Dify sends as ``Enterprise-Api-Secret-Key``. Only its SHA-256 is stored."""

    __tablename__ = "edge_inner_credentials"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    secret_hint: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class EdgeInnerSettings(EdgeBase):
    """One row: the Dify workspace new accounts join (None: no default workspace)."""

    __tablename__ = "edge_inner_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    default_workspace_id: Mapped[str | None] = mapped_column(String(36))


class EdgeSsoSwitches(EdgeBase):
    """The SSO switches of one kind (``app`` or ``signin``) as last served, and when they took effect here."""

    __tablename__ = "edge_sso_switches"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    switches: Mapped[str] = mapped_column(String(500))
    changed_at: Mapped[datetime]


class EdgeWorkspacePolicy(EdgeBase):
    __tablename__ = "edge_workspace_policies"

    workspace_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    allow_member_invite: Mapped[bool] = mapped_column(Boolean)
    allow_owner_transfer: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime]


class EdgeAppAccessMode(EdgeBase):
    __tablename__ = "edge_app_access_modes"

    app_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    access_mode: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime]


class EdgeAppAllowedUser(EdgeBase):
    __tablename__ = "edge_app_allowed_users"

    app_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    added_at: Mapped[datetime]


class EdgeDefaultWorkspaceMember(EdgeBase):
    __tablename__ = "edge_default_workspace_members"

    workspace_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    joined_at: Mapped[datetime]
