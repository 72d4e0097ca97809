"""offline usage imports keep their answer, so a replay of the same file answers it again

Revision ID: 0005_smalls
Revises: 0004
Create Date: 2026-12-01 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_smalls"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("offline_usage_imports", schema=None) as batch_op:
        batch_op.add_column(sa.Column("answer", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("offline_usage_imports", schema=None) as batch_op:
        batch_op.drop_column("answer")
