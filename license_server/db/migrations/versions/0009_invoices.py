"""billing invoices and payments: invoices with their lines, credit notes, the gapless number series, cached PDFs,
payments (manual and Stripe), and what the Stripe provider remembers (processed events, object states, customers)

Revision ID: 0009_invoices
Revises: 0008_portal
Create Date: 2026-12-01 11:00:31

Amounts are ``DecimalText``: unconstrained NUMERIC on PostgreSQL, exact decimal text on SQLite.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_invoices"
down_revision: str | None = "0008_portal"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AMOUNT = sa.Numeric().with_variant(sa.String(length=80), "sqlite")


def upgrade() -> None:
    op.create_table(
        "billing_number_sequences",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("next_value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_billing_number_sequences")),
    )
    op.create_table(
        "billing_stripe_events",
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("object_id", sa.String(length=255), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_billing_stripe_events")),
    )
    op.create_table(
        "billing_stripe_objects",
        sa.Column("object_id", sa.String(length=255), nullable=False),
        sa.Column("last_event_created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_event_id", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("object_id", name=op.f("pk_billing_stripe_objects")),
    )
    op.create_table(
        "billing_stripe_customers",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["billing_accounts.id"],
            name=op.f("fk_billing_stripe_customers_account_id_billing_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_billing_stripe_customers")),
        sa.UniqueConstraint("customer_id", name=op.f("uq_billing_stripe_customers_customer_id")),
    )
    op.create_table(
        "billing_invoices",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("subscription_id", sa.Uuid(), nullable=False),
        sa.Column("plan_code", sa.String(length=64), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("arrears_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("arrears_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("subtotal", AMOUNT, nullable=False),
        sa.Column("total", AMOUNT, nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("voided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("void_reason", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["billing_accounts.id"],
            name=op.f("fk_billing_invoices_account_id_billing_accounts"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["billing_subscriptions.id"],
            name=op.f("fk_billing_invoices_subscription_id_billing_subscriptions"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_invoices")),
        sa.UniqueConstraint("number", name=op.f("uq_billing_invoices_number")),
        sa.UniqueConstraint("subscription_id", "period_start", name="uq_billing_invoices_subscription_period"),
    )
    op.create_index("ix_billing_invoices_account_id", "billing_invoices", ["account_id", "period_start"])
    op.create_index("ix_billing_invoices_status_due_at", "billing_invoices", ["status", "due_at"])

    op.create_table(
        "billing_credit_notes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("invoice_id", sa.Uuid(), nullable=False),
        sa.Column("amount", AMOUNT, nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["billing_invoices.id"],
            name=op.f("fk_billing_credit_notes_invoice_id_billing_invoices"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_credit_notes")),
        sa.UniqueConstraint("number", name=op.f("uq_billing_credit_notes_number")),
    )
    op.create_index("ix_billing_credit_notes_invoice_id", "billing_credit_notes", ["invoice_id"])

    op.create_table(
        "billing_invoice_lines",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("invoice_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("quantity", AMOUNT, nullable=False),
        sa.Column("unit_price", AMOUNT, nullable=False),
        sa.Column("amount", AMOUNT, nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["billing_invoices.id"],
            name=op.f("fk_billing_invoice_lines_invoice_id_billing_invoices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_invoice_lines")),
        sa.UniqueConstraint("invoice_id", "position", name="uq_billing_invoice_lines_invoice_position"),
    )
    op.create_table(
        "billing_invoice_pdfs",
        sa.Column("invoice_id", sa.Uuid(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("rendered_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["billing_invoices.id"],
            name=op.f("fk_billing_invoice_pdfs_invoice_id_billing_invoices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("invoice_id", name=op.f("pk_billing_invoice_pdfs")),
    )
    op.create_table(
        "billing_payments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("invoice_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("amount", AMOUNT, nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("request_digest", sa.String(length=64), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=False),
        sa.Column("credit_note_id", sa.Uuid(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["credit_note_id"],
            ["billing_credit_notes.id"],
            name=op.f("fk_billing_payments_credit_note_id_billing_credit_notes"),
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["billing_invoices.id"],
            name=op.f("fk_billing_payments_invoice_id_billing_invoices"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_payments")),
        sa.UniqueConstraint("provider", "idempotency_key", name="uq_billing_payments_provider_key"),
    )
    op.create_index("ix_billing_payments_invoice_id", "billing_payments", ["invoice_id"])


def downgrade() -> None:
    op.drop_index("ix_billing_payments_invoice_id", table_name="billing_payments")

    op.drop_table("billing_payments")
    op.drop_table("billing_invoice_pdfs")
    op.drop_table("billing_invoice_lines")
    op.drop_index("ix_billing_credit_notes_invoice_id", table_name="billing_credit_notes")

    op.drop_table("billing_credit_notes")
    op.drop_index("ix_billing_invoices_status_due_at", table_name="billing_invoices")
    op.drop_index("ix_billing_invoices_account_id", table_name="billing_invoices")

    op.drop_table("billing_invoices")
    op.drop_table("billing_stripe_customers")
    op.drop_table("billing_stripe_objects")
    op.drop_table("billing_stripe_events")
    op.drop_table("billing_number_sequences")
