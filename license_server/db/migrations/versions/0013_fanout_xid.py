"""events carry their writing transaction's id, so webhook fan-out needs no table lock on PostgreSQL

Revision ID: 0013_fanout_xid
Revises: 0012_shared_state
Create Date: 2026-12-01 11:30:00

On PostgreSQL events.txid defaults to pg_current_xact_id() (PostgreSQL 13+), and fan-out reads events in (txid, id)
order below the snapshot's xmin (events/webhooks.py). Existing events were all written by finished transactions:
they get txid 0, and each endpoint's cursor becomes (0, its last event id), so what it had not seen yet it still
receives, once. SQLite keeps txid NULL and the id cursor.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_fanout_xid"
down_revision: str | None = "0012_shared_state"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("txid", sa.BigInteger(), nullable=True))
        batch_op.create_index("ix_events_txid_id", ["txid", "id"], unique=False)
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_event_txid", sa.BigInteger(), server_default="0", nullable=False))
    if postgres:
        op.execute("UPDATE events SET txid = 0")
        op.execute("ALTER TABLE events ALTER COLUMN txid SET DEFAULT (pg_current_xact_id()::text::bigint)")


def downgrade() -> None:
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.drop_column("last_event_txid")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_txid_id")
        batch_op.drop_column("txid")
