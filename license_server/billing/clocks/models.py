"""Test clocks and the accounts that follow them."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from license_server.clock import utcnow
from license_server.db.base import Base, new_id


class TestClock(Base):
    """A frozen instant staff move forward; every date computation of its accounts reads ``frozen_now``."""

    __tablename__ = "billing_test_clocks"
    __test__ = False  # a model, not a pytest test class

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    frozen_now: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class TestClockAccount(Base):
    """An account follows at most one clock (the primary key); detaching it returns it to real time."""

    __tablename__ = "billing_test_clock_accounts"
    __table_args__ = (Index("ix_billing_test_clock_accounts_clock_id", "clock_id"),)
    __test__ = False

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("billing_accounts.id", ondelete="CASCADE"), primary_key=True
    )
    clock_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("billing_test_clocks.id", ondelete="CASCADE"))
    attached_at: Mapped[datetime] = mapped_column(default=utcnow)
