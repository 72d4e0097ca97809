"""billing core: plans' billing terms, platforms, accounts, subscriptions, overrides, usage

Revision ID: 0005_billing_core
Revises: 0004
Create Date: 2026-12-01 07:19:35.501432
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_billing_core"
down_revision: str | None = "0005_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "billing_platforms",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("billing_enabled", sa.Boolean(), nullable=False),
        sa.Column("default_plan_id", sa.Uuid(), nullable=True),
        sa.Column("restrictive_defaults", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["default_plan_id"],
            ["plans.id"],
            name=op.f("fk_billing_platforms_default_plan_id_plans"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_platforms")),
    )
    op.create_table(
        "billing_accounts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("platform_id", sa.Uuid(), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=True),
        sa.Column("flex_enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_billing_accounts_customer_id_customers"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["platform_id"],
            ["billing_platforms.id"],
            name=op.f("fk_billing_accounts_platform_id_billing_platforms"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_accounts")),
        sa.UniqueConstraint("platform_id", "external_id", name="uq_billing_accounts_platform_external"),
    )
    op.create_table(
        "billing_platform_secrets",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("platform_id", sa.Uuid(), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("secret_hint", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["platform_id"],
            ["billing_platforms.id"],
            name=op.f("fk_billing_platform_secrets_platform_id_billing_platforms"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_platform_secrets")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_billing_platform_secrets_secret_hash")),
    )
    with op.batch_alter_table("billing_platform_secrets", schema=None) as batch_op:
        batch_op.create_index("ix_billing_platform_secrets_platform_id", ["platform_id"], unique=False)

    op.create_table(
        "billing_limit_overrides",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("limit_value", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["billing_accounts.id"],
            name=op.f("fk_billing_limit_overrides_account_id_billing_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "key", name=op.f("pk_billing_limit_overrides")),
    )
    op.create_table(
        "billing_reservations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(length=200), nullable=False),
        sa.Column("request_digest", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("committed_amount", sa.BigInteger(), nullable=True),
        sa.Column("history_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["billing_accounts.id"],
            name=op.f("fk_billing_reservations_account_id_billing_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_reservations")),
        sa.UniqueConstraint("account_id", "request_id", name="uq_billing_reservations_account_request"),
    )
    with op.batch_alter_table("billing_reservations", schema=None) as batch_op:
        batch_op.create_index("ix_billing_reservations_status_expires_at", ["status", "expires_at"], unique=False)

    op.create_table(
        "billing_subscriptions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("plan_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("anchor_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trial_ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("canceled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["billing_accounts.id"],
            name=op.f("fk_billing_subscriptions_account_id_billing_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["plan_id"], ["plans.id"], name=op.f("fk_billing_subscriptions_plan_id_plans"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_subscriptions")),
    )
    with op.batch_alter_table("billing_subscriptions", schema=None) as batch_op:
        batch_op.create_index("ix_billing_subscriptions_account_id", ["account_id"], unique=False)

    op.create_table(
        "billing_usage_counters",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.Column("held", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["billing_accounts.id"],
            name=op.f("fk_billing_usage_counters_account_id_billing_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "key", "period_start", name=op.f("pk_billing_usage_counters")),
    )
    op.create_table(
        "billing_usage_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("agent", sa.String(length=200), nullable=True),
        sa.Column("app", sa.String(length=200), nullable=True),
        sa.Column("line_items", sa.JSON(), nullable=False),
        # Exact on both engines: unconstrained NUMERIC; on SQLite (NUMERIC is a binary float there) the decimal text.
        sa.Column("cost", sa.Numeric().with_variant(sa.String(length=80), "sqlite"), nullable=False),
        sa.Column("request_digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["billing_accounts.id"],
            name=op.f("fk_billing_usage_events_account_id_billing_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_usage_events")),
        sa.UniqueConstraint("account_id", "event_id", name="uq_billing_usage_events_account_event"),
    )
    with op.batch_alter_table("billing_usage_events", schema=None) as batch_op:
        batch_op.create_index("ix_billing_usage_events_account_occurred", ["account_id", "occurred_at"], unique=False)

    op.create_table(
        "billing_usage_gauges",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["billing_accounts.id"],
            name=op.f("fk_billing_usage_gauges_account_id_billing_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "key", name=op.f("pk_billing_usage_gauges")),
    )
    op.create_table(
        "billing_usage_records",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("operation", sa.String(length=32), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("request_digest", sa.String(length=64), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("refunded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("refund_response", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["billing_accounts.id"],
            name=op.f("fk_billing_usage_records_account_id_billing_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_usage_records")),
        sa.UniqueConstraint("account_id", "idempotency_key", name="uq_billing_usage_records_account_key"),
    )
    with op.batch_alter_table("billing_usage_records", schema=None) as batch_op:
        batch_op.create_index("ix_billing_usage_records_account_created", ["account_id", "created_at"], unique=False)

    with op.batch_alter_table("plans", schema=None) as batch_op:
        # Existing plans back licenses only: no billing terms.
        batch_op.add_column(sa.Column("billing", sa.JSON(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("plans", schema=None) as batch_op:
        batch_op.drop_column("billing")

    with op.batch_alter_table("billing_usage_records", schema=None) as batch_op:
        batch_op.drop_index("ix_billing_usage_records_account_created")

    op.drop_table("billing_usage_records")
    op.drop_table("billing_usage_gauges")
    with op.batch_alter_table("billing_usage_events", schema=None) as batch_op:
        batch_op.drop_index("ix_billing_usage_events_account_occurred")

    op.drop_table("billing_usage_events")
    op.drop_table("billing_usage_counters")
    with op.batch_alter_table("billing_subscriptions", schema=None) as batch_op:
        batch_op.drop_index("ix_billing_subscriptions_account_id")

    op.drop_table("billing_subscriptions")
    with op.batch_alter_table("billing_reservations", schema=None) as batch_op:
        batch_op.drop_index("ix_billing_reservations_status_expires_at")

    op.drop_table("billing_reservations")
    op.drop_table("billing_limit_overrides")
    with op.batch_alter_table("billing_platform_secrets", schema=None) as batch_op:
        batch_op.drop_index("ix_billing_platform_secrets_platform_id")

    op.drop_table("billing_platform_secrets")
    op.drop_table("billing_accounts")
    op.drop_table("billing_platforms")
