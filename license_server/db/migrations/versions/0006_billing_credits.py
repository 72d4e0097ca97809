"""billing credits: grants, the append-only ledger of movements, and the draws each debit made

Revision ID: 0006_billing_credits
Revises: 0005_billing_core
Create Date: 2026-12-01 07:40:00

Amounts are exact: NUMERIC(24, 6) on PostgreSQL, an integer count of millionths on SQLite (whose NUMERIC is a
binary float); ``ExactDecimal`` in db/base.py converts.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_billing_credits"
down_revision: str | None = "0005_billing_core"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CREDITS = sa.Numeric(24, 6).with_variant(sa.BigInteger(), "sqlite")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "credit_grants",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("subscription_id", sa.Uuid(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("amount", CREDITS, nullable=False),
        sa.Column("remaining", CREDITS, nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cycle_start", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["billing_accounts.id"],
            name=op.f("fk_credit_grants_account_id_billing_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["billing_subscriptions.id"],
            name=op.f("fk_credit_grants_subscription_id_billing_subscriptions"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_grants")),
        sa.UniqueConstraint("subscription_id", "cycle_start", name="uq_credit_grants_subscription_cycle"),
    )
    op.create_index("ix_credit_grants_account_id", "credit_grants", ["account_id"])
    op.create_index("ix_credit_grants_expires_at", "credit_grants", ["expires_at"])
    op.create_index("ix_credit_grants_granted_at", "credit_grants", ["granted_at"])
    op.create_table(
        "credit_movements",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("amount", CREDITS, nullable=False),
        sa.Column("flex", CREDITS, nullable=False),
        sa.Column("grant_id", BIG_ID, nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("request_digest", sa.String(length=64), nullable=True),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["billing_accounts.id"],
            name=op.f("fk_credit_movements_account_id_billing_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["grant_id"],
            ["credit_grants.id"],
            name=op.f("fk_credit_movements_grant_id_credit_grants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_movements")),
        sa.UniqueConstraint("account_id", "idempotency_key", name="uq_credit_movements_account_idempotency_key"),
    )
    op.create_index("ix_credit_movements_account_id_id", "credit_movements", ["account_id", "id"])
    op.create_index("ix_credit_movements_grant_id", "credit_movements", ["grant_id"])
    op.create_table(
        "credit_draws",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("movement_id", BIG_ID, nullable=False),
        sa.Column("grant_id", BIG_ID, nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("amount", CREDITS, nullable=False),
        sa.ForeignKeyConstraint(
            ["movement_id"],
            ["credit_movements.id"],
            name=op.f("fk_credit_draws_movement_id_credit_movements"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["grant_id"],
            ["credit_grants.id"],
            name=op.f("fk_credit_draws_grant_id_credit_grants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_draws")),
    )
    op.create_index("ix_credit_draws_movement_id", "credit_draws", ["movement_id"])
    op.create_index("ix_credit_draws_grant_id", "credit_draws", ["grant_id"])


def downgrade() -> None:
    op.drop_index("ix_credit_draws_grant_id", table_name="credit_draws")
    op.drop_index("ix_credit_draws_movement_id", table_name="credit_draws")
    op.drop_table("credit_draws")
    op.drop_index("ix_credit_movements_grant_id", table_name="credit_movements")
    op.drop_index("ix_credit_movements_account_id_id", table_name="credit_movements")
    op.drop_table("credit_movements")
    op.drop_index("ix_credit_grants_granted_at", table_name="credit_grants")
    op.drop_index("ix_credit_grants_expires_at", table_name="credit_grants")
    op.drop_index("ix_credit_grants_account_id", table_name="credit_grants")
    op.drop_table("credit_grants")
