"""licenses.next_transition_at: when a license's status can next change, indexed, so the sweep visits only those
(and a partial index of the live activations by heartbeat deadline, the sweep's other way in)

Revision ID: 0011_next_transition
Revises: 0010_subscriptions
Create Date: 2026-12-01 11:00:00

The backfill writes, for every existing license, what ``lifecycle.status.next_transition_at`` says at upgrade time,
or the upgrade time itself where the stored status is already stale (the first sweep moves those). The rule is
copied here as it stands at this revision, so the migration keeps meaning the same when the code moves on.
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0011_next_transition"
down_revision: str | None = "0010_subscriptions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)
_licenses = sa.table(
    "licenses",
    sa.column("revoked_at", _TS),
    sa.column("suspended_at", _TS),
    sa.column("starts_at", _TS),
    sa.column("expires_at", _TS),
    sa.column("expiring_at", _TS),
    sa.column("grace_ends_at", _TS),
    sa.column("first_activated_at", _TS),
    sa.column("heartbeat_deadline", _TS),
    sa.column("status", sa.String),
    sa.column("status_reason", sa.String),
    sa.column("next_transition_at", _TS),
)


def _schedule(now: datetime) -> sa.ColumnElement[datetime]:
    c = _licenses.c
    ladder = [
        (c.revoked_at.is_not(None), ("inactive", "REVOKED")),
        (c.suspended_at.is_not(None), ("inactive", "SUSPENDED")),
        (c.starts_at > now, ("inactive", "NOT_STARTED")),
        (c.grace_ends_at <= now, ("expired", "EXPIRED")),
        (c.first_activated_at.is_(None), ("inactive", "NOT_ACTIVATED")),
        (c.heartbeat_deadline < now, ("lost", "HEARTBEAT_MISSED")),
        (c.expires_at <= now, ("expiring", "IN_GRACE_PERIOD")),
        (c.expiring_at <= now, ("expiring", "EXPIRES_SOON")),
    ]
    status = sa.case(*[(cond, s) for cond, (s, _) in ladder], else_="active")
    reason = sa.case(*[(cond, r) for cond, (_, r) in ladder], else_="ACTIVE")
    scheduled = sa.case((c.expiring_at > now, c.expiring_at), (c.expires_at > now, c.expires_at), else_=c.grace_ends_at)
    upcoming = sa.case(
        (sa.or_(c.revoked_at.is_not(None), c.suspended_at.is_not(None)), sa.null()),
        (c.starts_at > now, c.starts_at),
        (c.grace_ends_at <= now, sa.null()),
        (c.first_activated_at.is_(None), c.grace_ends_at),
        (c.heartbeat_deadline < now, c.grace_ends_at),
        (c.heartbeat_deadline < scheduled, c.heartbeat_deadline),
        else_=scheduled,
    )
    stale = sa.or_(status != c.status, reason != c.status_reason)
    return sa.case((stale, sa.literal(now, _TS)), else_=upcoming)


def upgrade() -> None:
    with op.batch_alter_table("licenses", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_transition_at", _TS, nullable=True))
        batch_op.create_index("ix_licenses_next_transition_at", ["next_transition_at", "id"], unique=False)
    op.execute(_licenses.update().values(next_transition_at=_schedule(datetime.now(UTC))))
    live = sa.text("lost_at IS NULL AND deactivated_at IS NULL")
    op.create_index(
        "ix_activations_live_heartbeat_deadline",
        "activations",
        ["heartbeat_deadline"],
        unique=False,
        sqlite_where=live,
        postgresql_where=live,
    )


def downgrade() -> None:
    op.drop_index("ix_activations_live_heartbeat_deadline", table_name="activations")
    with op.batch_alter_table("licenses", schema=None) as batch_op:
        batch_op.drop_index("ix_licenses_next_transition_at")
        batch_op.drop_column("next_transition_at")
