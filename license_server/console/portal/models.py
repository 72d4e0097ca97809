"""Portal links (one-time, short-lived) and the portal sessions they start, both stored hashed.

A link or a session is for exactly one subject: a billing account (the hosted customer's billing pages) or a
customer (the self-hosted customer's licenses). The database holds only HMAC digests of the link token and of the
session cookie, so a copy of it cannot open anyone's portal.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from license_server.clock import utcnow
from license_server.db.base import Base, new_id


class PortalRole(StrEnum):
    """The customer's own role in their organisation, as the platform (or vendor staff) states it (seed 002)."""

    OWNER = "owner"
    ADMIN = "admin"
    BILLING_READ = "billing:read"
    MEMBER = "member"


class PortalLink(Base):
    __tablename__ = "portal_links"
    __table_args__ = (
        # One subject, never both and never none.
        CheckConstraint("(account_id IS NULL) != (customer_id IS NULL)", name="one_subject"),
        Index("ix_portal_links_account_id", "account_id"),
        Index("ix_portal_links_customer_id", "customer_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("billing_accounts.id", ondelete="CASCADE"))
    customer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))
    # Where the customer pays (past-due banner, buying credits); the platform's own page, when it gave one.
    payment_url: Mapped[str | None] = mapped_column(String(2000))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class PortalSession(Base):
    __tablename__ = "portal_sessions"
    __table_args__ = (Index("ix_portal_sessions_link_id", "link_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    link_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("portal_links.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]  # signed out

    link: Mapped[PortalLink] = relationship(lazy="joined", innerjoin=True)
