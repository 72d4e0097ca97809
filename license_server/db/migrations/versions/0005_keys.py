"""keys: the imported root-signed revocation lists, shared by every replica

Revision ID: 0005_keys
Revises: 0004
Create Date: 2026-12-01 07:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_keys"
down_revision: str | None = "0005_webhook_secrets"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "key_revocation_lists",
        sa.Column("sequence", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("imported_by", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("sequence", name=op.f("pk_key_revocation_lists")),
    )


def downgrade() -> None:
    op.drop_table("key_revocation_lists")
