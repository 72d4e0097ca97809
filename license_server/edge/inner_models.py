"""The edge's inner-API records, in its own SQLite file: what the vendor keeps per license, kept per install here.

Declared on ``EdgeBase``, so ``prepare`` creates these tables with the rest of the edge's schema. The columns are the
vendor's (the ``*Columns`` mixins of ``inner_api.models``), without a license id: an edge serves one license file, and
its data directory belongs to that install. The table names and columns are those of existing edge.db files.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from license_server.edge.store import EdgeBase
from license_server.inner_api.models import (
    AppAccessModeColumns,
    AppAllowedUserColumns,
    CredentialColumns,
    DefaultWorkspaceMemberColumns,
    WorkspacePolicyColumns,
)


class EdgeInnerCredential(CredentialColumns, EdgeBase):
    """A secret the local Dify sends as ``Enterprise-Api-Secret-Key``. Only its SHA-256 is stored."""

    __tablename__ = "edge_inner_credentials"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, sort_order=-1)


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


class EdgeWorkspacePolicy(WorkspacePolicyColumns, EdgeBase):
    __tablename__ = "edge_workspace_policies"


class EdgeAppAccessMode(AppAccessModeColumns, EdgeBase):
    __tablename__ = "edge_app_access_modes"


class EdgeAppAllowedUser(AppAllowedUserColumns, EdgeBase):
    __tablename__ = "edge_app_allowed_users"


class EdgeDefaultWorkspaceMember(DefaultWorkspaceMemberColumns, EdgeBase):
    __tablename__ = "edge_default_workspace_members"
