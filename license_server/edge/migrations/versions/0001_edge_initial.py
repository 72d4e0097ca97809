"""the edge schema as create_all made it before the edge had migrations (release c09879d)

Revision ID: 0001_edge_initial
Revises:
Create Date: 2026-12-01 11:50:43

An edge.db made by that release has exactly these tables and no version table: edge.store.prepare stamps it here.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_edge_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "edge_app_access_modes",
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("access_mode", sa.String(length=16), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("app_id", name=op.f("pk_edge_app_access_modes")),
    )
    op.create_table(
        "edge_app_allowed_users",
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("app_id", "user_id", name=op.f("pk_edge_app_allowed_users")),
    )
    op.create_table(
        "edge_binding",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("license_id", sa.String(length=64), nullable=False),
        sa.Column("activation_id", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.String(length=256), nullable=False),
        sa.Column("install_key", sa.String(length=64), nullable=False),
        sa.Column("claims", sa.JSON(), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_edge_binding")),
    )
    op.create_table(
        "edge_default_workspace_members",
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "account_id", name=op.f("pk_edge_default_workspace_members")),
    )
    op.create_table(
        "edge_inner_credentials",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("secret_hint", sa.String(length=16), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_edge_inner_credentials")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_edge_inner_credentials_secret_hash")),
    )
    op.create_table(
        "edge_inner_settings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("default_workspace_id", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_edge_inner_settings")),
    )
    op.create_table(
        "edge_sso_switches",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("switches", sa.String(length=500), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kind", name=op.f("pk_edge_sso_switches")),
    )
    op.create_table(
        "edge_trusted_time",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("newest_iat", sa.Float(), nullable=False),
        sa.Column("newest_local", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_edge_trusted_time")),
    )
    op.create_table(
        "edge_usage",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("measured_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seats_used", sa.Integer(), nullable=False),
        sa.Column("workspace_count", sa.Integer(), nullable=False),
        sa.Column("max_members", sa.Integer(), nullable=False),
        sa.Column("workspaces", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_edge_usage")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_edge_usage_idempotency_key")),
    )
    op.create_table(
        "edge_usage_reports",
        sa.Column("activation_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("through_usage_id", sa.Integer(), nullable=False),
        sa.Column("measurements", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("text", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("activation_id", "seq", name=op.f("pk_edge_usage_reports")),
    )
    op.create_table(
        "edge_workspace_policies",
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("allow_member_invite", sa.Boolean(), nullable=False),
        sa.Column("allow_owner_transfer", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", name=op.f("pk_edge_workspace_policies")),
    )


def downgrade() -> None:
    op.drop_table("edge_workspace_policies")
    op.drop_table("edge_usage_reports")
    op.drop_table("edge_usage")
    op.drop_table("edge_trusted_time")
    op.drop_table("edge_sso_switches")
    op.drop_table("edge_inner_settings")
    op.drop_table("edge_inner_credentials")
    op.drop_table("edge_default_workspace_members")
    op.drop_table("edge_binding")
    op.drop_table("edge_app_allowed_users")
    op.drop_table("edge_app_access_modes")
