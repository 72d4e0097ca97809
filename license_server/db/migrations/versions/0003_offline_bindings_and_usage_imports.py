"""offline bindings and usage imports

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 12:51:08.609417
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "offline_bindings",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("activation_id", sa.Uuid(), nullable=False),
        sa.Column("license_id", sa.Uuid(), nullable=False),
        sa.Column("fingerprint", sa.String(length=256), nullable=False),
        sa.Column("install_key", sa.String(length=64), nullable=False),
        sa.Column("request_nonce", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("files_issued", sa.Integer(), nullable=False),
        sa.Column("last_file_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("usage_seq", sa.Integer(), nullable=False),
        sa.Column("usage_head", sa.String(length=64), nullable=False),
        sa.Column("usage_imported_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["activation_id"],
            ["activations.id"],
            name=op.f("fk_offline_bindings_activation_id_activations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["license_id"], ["licenses.id"], name=op.f("fk_offline_bindings_license_id_licenses"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_offline_bindings")),
        sa.UniqueConstraint("activation_id", name=op.f("uq_offline_bindings_activation_id")),
        sa.UniqueConstraint("install_key", name=op.f("uq_offline_bindings_install_key")),
    )
    with op.batch_alter_table("offline_bindings", schema=None) as batch_op:
        batch_op.create_index("ix_offline_bindings_license_id", ["license_id"], unique=False)

    op.create_table(
        "offline_usage_imports",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("binding_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("report_hash", sa.String(length=64), nullable=False),
        sa.Column("report_created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("measurements", sa.JSON(), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("imported_by", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["binding_id"],
            ["offline_bindings.id"],
            name=op.f("fk_offline_usage_imports_binding_id_offline_bindings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_offline_usage_imports")),
        sa.UniqueConstraint("binding_id", "seq", name=op.f("uq_offline_usage_imports_binding_seq")),
    )


def downgrade() -> None:

    op.drop_table("offline_usage_imports")
    with op.batch_alter_table("offline_bindings", schema=None) as batch_op:
        batch_op.drop_index("ix_offline_bindings_license_id")

    op.drop_table("offline_bindings")
