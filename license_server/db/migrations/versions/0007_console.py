"""console: staff users and their server-side sessions; keyset indexes for the console's lists

Revision ID: 0007_console
Revises: 0006_billing_credits
Create Date: 2026-12-01 11:00:00

The console's lists page by keyset ((created_at, id), per status too), the dashboard asks for licenses expiring soon
and subscriptions past due, and customer search is a name prefix in any case: each gets an index so its cost does
not grow with the table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_console"
down_revision: str | None = "0006_billing_credits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "staff_users",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_users")),
        sa.UniqueConstraint("email", name=op.f("uq_staff_users_email")),
    )
    op.create_table(
        "staff_sessions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("staff_user_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["staff_user_id"],
            ["staff_users.id"],
            name=op.f("fk_staff_sessions_staff_user_id_staff_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_staff_sessions_token_hash")),
    )
    op.create_index("ix_staff_sessions_staff_user_id", "staff_sessions", ["staff_user_id"])
    op.create_index("ix_licenses_created_at_id", "licenses", ["created_at", "id"])
    op.create_index("ix_licenses_status_created_at_id", "licenses", ["status", "created_at", "id"])
    op.create_index("ix_licenses_expires_at", "licenses", ["expires_at"])
    op.create_index("ix_customers_name_lower", "customers", [sa.text("lower(name)")])
    op.create_index("ix_billing_accounts_created_at_id", "billing_accounts", ["created_at", "id"])
    op.create_index("ix_billing_subscriptions_status", "billing_subscriptions", ["status"])


def downgrade() -> None:
    op.drop_index("ix_billing_subscriptions_status", table_name="billing_subscriptions")
    op.drop_index("ix_billing_accounts_created_at_id", table_name="billing_accounts")
    op.drop_index("ix_customers_name_lower", table_name="customers")
    op.drop_index("ix_licenses_expires_at", table_name="licenses")
    op.drop_index("ix_licenses_status_created_at_id", table_name="licenses")
    op.drop_index("ix_licenses_created_at_id", table_name="licenses")
    op.drop_index("ix_staff_sessions_staff_user_id", table_name="staff_sessions")
    op.drop_table("staff_sessions")
    op.drop_table("staff_users")
