"""counters every replica shares: rate-limit windows and failed-auth fingerprints (UNLOGGED on PostgreSQL)

Revision ID: 0012_shared_state
Revises: 0011_next_transition
Create Date: 2026-12-01 11:10:00

UNLOGGED: a crash of the database forgets the counts of the last window, which costs nothing but a fresh window,
and the hottest writes of the poll path's neighbours skip the WAL.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_shared_state"
down_revision: str | None = "0011_next_transition"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    unlogged = ["UNLOGGED"] if op.get_bind().dialect.name == "postgresql" else []
    op.create_table(
        "shared_rate_windows",
        sa.Column("key", sa.String(length=160), nullable=False),
        sa.Column("bucket", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", "bucket", name=op.f("pk_shared_rate_windows")),
        prefixes=unlogged,
    )
    op.create_index("ix_shared_rate_windows_bucket", "shared_rate_windows", ["bucket"], unique=False)
    op.create_table(
        "shared_auth_failures",
        sa.Column("key", sa.String(length=160), nullable=False),
        sa.Column("fingerprint", sa.LargeBinary(length=16), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", "fingerprint", name=op.f("pk_shared_auth_failures")),
        prefixes=unlogged,
    )
    op.create_index("ix_shared_auth_failures_failed_at", "shared_auth_failures", ["failed_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_shared_auth_failures_failed_at", table_name="shared_auth_failures")
    op.drop_table("shared_auth_failures")
    op.drop_index("ix_shared_rate_windows_bucket", table_name="shared_rate_windows")
    op.drop_table("shared_rate_windows")
