"""The credits ledger: grants, the append-only movements, and the draws that trace each debit to its grants.

``credit_movements`` is the ledger: every change to an account's credits is one row (a grant, a debit, a forfeit),
and rows are never updated or deleted — a correction is a new movement. ``credit_grants.remaining`` is the one
materialised figure, kept in step by the same transaction that writes the movement (a test re-derives it from the
movements and draws). Amounts are exact decimals (``ExactDecimal``: NUMERIC on PostgreSQL, integer millionths on
SQLite).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from license_server.billing.credits.burndown import CreditKind, GrantBalance
from license_server.db.base import Base, BigIntId, ExactDecimal

CREDIT_SCALE = 6  # decimal places kept; more on the wire is refused
CREDITS = ExactDecimal(24, CREDIT_SCALE)
# Far beyond any real grant or debit (a billion credits), far inside what a 64-bit count of millionths holds.
MAX_CREDITS = Decimal(10) ** 9


class MovementKind(StrEnum):
    GRANT = "grant"  # + amount: a new grant
    DEBIT = "debit"  # - amount: drawn from grants (see credit_draws), the rest as flex
    FORFEIT = "forfeit"  # - amount: what was left of an included grant at its period's end, or of an expired grant


class CreditGrant(Base):
    __tablename__ = "credit_grants"
    __table_args__ = (
        Index("ix_credit_grants_account_id", "account_id"),
        Index("ix_credit_grants_expires_at", "expires_at"),
        Index("ix_credit_grants_granted_at", "granted_at"),
        # One included grant per subscription and cycle, however often the rollover (or a debit) asks for it.
        UniqueConstraint("subscription_id", "cycle_start", name="uq_credit_grants_subscription_cycle"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("billing_accounts.id", ondelete="CASCADE"))
    # Included credits of a plan's cycle: the subscription they come with; None for staff grants.
    subscription_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("billing_subscriptions.id", ondelete="SET NULL")
    )
    kind: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Decimal] = mapped_column(CREDITS)
    remaining: Mapped[Decimal] = mapped_column(CREDITS)
    granted_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]  # included: the cycle's end; promotional: its date; prepaid: never
    cycle_start: Mapped[datetime | None]  # included grants: the billing period they belong to

    def balance(self) -> GrantBalance:
        return GrantBalance(
            grant_id=self.id,
            kind=CreditKind(self.kind),
            remaining=self.remaining,
            granted_at=self.granted_at,
            expires_at=self.expires_at,
        )


class CreditMovement(Base):
    __tablename__ = "credit_movements"
    __table_args__ = (
        Index("ix_credit_movements_account_id_id", "account_id", "id"),
        Index("ix_credit_movements_grant_id", "grant_id"),
        # A replay of a key answers the first movement; the digest tells a replay from a different request.
        UniqueConstraint("account_id", "idempotency_key", name="uq_credit_movements_account_idempotency_key"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("billing_accounts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Decimal] = mapped_column(CREDITS)  # signed: the change to the account's credit position
    flex: Mapped[Decimal] = mapped_column(CREDITS, default=Decimal(0))  # debits: the part no grant covered
    grant_id: Mapped[int | None] = mapped_column(ForeignKey("credit_grants.id", ondelete="CASCADE"))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_digest: Mapped[str | None] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(String(500), default="")
    extra_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    actor: Mapped[str | None] = mapped_column(String(200))  # staff grants: who; platform debits: None
    occurred_at: Mapped[datetime]


class CreditDraw(Base):
    """One grant (or flex) a debit drew from, and how much: the traceable burn-down."""

    __tablename__ = "credit_draws"
    __table_args__ = (
        Index("ix_credit_draws_movement_id", "movement_id"),
        Index("ix_credit_draws_grant_id", "grant_id"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    movement_id: Mapped[int] = mapped_column(ForeignKey("credit_movements.id", ondelete="CASCADE"))
    grant_id: Mapped[int | None] = mapped_column(ForeignKey("credit_grants.id", ondelete="CASCADE"))  # None: flex
    kind: Mapped[str] = mapped_column(String(16))  # the grant's kind, or "flex"
    amount: Mapped[Decimal] = mapped_column(CREDITS)
