"""subscription lifecycle: the lifecycle's facts on subscriptions, plan changes, test clocks

Revision ID: 0010_subscriptions
Revises: 0009_invoices
Create Date: 2026-12-01 11:00:00

Existing subscriptions get no current term here: the renewal job fills it from the anchor at its first run.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_subscriptions"
down_revision: str | None = "0009_invoices"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MOMENT = sa.DateTime(timezone=True)
NEW_MOMENTS = (
    "current_period_start",
    "current_period_end",
    "cancel_at",
    "paused_at",
    "payment_failed_at",
    "payment_overdue_at",
    "trial_notice_for",
)


def upgrade() -> None:
    with op.batch_alter_table("billing_subscriptions", schema=None) as batch_op:
        for name in NEW_MOMENTS:
            batch_op.add_column(sa.Column(name, MOMENT, nullable=True))
        batch_op.add_column(sa.Column("pending_plan_id", sa.Uuid(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_billing_subscriptions_pending_plan_id_plans"),
            "plans",
            ["pending_plan_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_index("ix_billing_subscriptions_current_period_end", ["current_period_end"], unique=False)

    op.create_table(
        "billing_subscription_plan_changes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("subscription_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("from_plan_id", sa.Uuid(), nullable=False),
        sa.Column("to_plan_id", sa.Uuid(), nullable=False),
        sa.Column("requested_at", MOMENT, nullable=False),
        sa.Column("effective_at", MOMENT, nullable=False),
        sa.Column("period_start", MOMENT, nullable=False),
        sa.Column("period_end", MOMENT, nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("days_left", sa.Integer(), nullable=False),
        sa.Column("period_days", sa.Integer(), nullable=False),
        sa.Column("credit", sa.Numeric().with_variant(sa.String(length=80), "sqlite"), nullable=False),
        sa.Column("charge", sa.Numeric().with_variant(sa.String(length=80), "sqlite"), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["billing_subscriptions.id"],
            name=op.f("fk_billing_subscription_plan_changes_subscription_id_billing_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["from_plan_id"],
            ["plans.id"],
            name=op.f("fk_billing_subscription_plan_changes_from_plan_id_plans"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["to_plan_id"],
            ["plans.id"],
            name=op.f("fk_billing_subscription_plan_changes_to_plan_id_plans"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_subscription_plan_changes")),
    )
    op.create_index(
        "ix_billing_subscription_plan_changes_subscription_id",
        "billing_subscription_plan_changes",
        ["subscription_id"],
    )

    op.create_table(
        "billing_test_clocks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("frozen_now", MOMENT, nullable=False),
        sa.Column("created_at", MOMENT, nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("updated_at", MOMENT, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_test_clocks")),
    )
    op.create_table(
        "billing_test_clock_accounts",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("clock_id", sa.Uuid(), nullable=False),
        sa.Column("attached_at", MOMENT, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["billing_accounts.id"],
            name=op.f("fk_billing_test_clock_accounts_account_id_billing_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["clock_id"],
            ["billing_test_clocks.id"],
            name=op.f("fk_billing_test_clock_accounts_clock_id_billing_test_clocks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_billing_test_clock_accounts")),
    )
    op.create_index("ix_billing_test_clock_accounts_clock_id", "billing_test_clock_accounts", ["clock_id"])


def downgrade() -> None:
    op.drop_index("ix_billing_test_clock_accounts_clock_id", table_name="billing_test_clock_accounts")
    op.drop_table("billing_test_clock_accounts")
    op.drop_table("billing_test_clocks")
    op.drop_index(
        "ix_billing_subscription_plan_changes_subscription_id", table_name="billing_subscription_plan_changes"
    )
    op.drop_table("billing_subscription_plan_changes")
    with op.batch_alter_table("billing_subscriptions", schema=None) as batch_op:
        batch_op.drop_index("ix_billing_subscriptions_current_period_end")
        batch_op.drop_constraint(batch_op.f("fk_billing_subscriptions_pending_plan_id_plans"), type_="foreignkey")
        batch_op.drop_column("pending_plan_id")
        for name in reversed(NEW_MOMENTS):
            batch_op.drop_column(name)
