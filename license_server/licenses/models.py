"""Customers, plans and licenses. Models hold state and its transitions; services orchestrate."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from license_server.clock import utcnow
from license_server.db.base import Base, BigIntId, new_id
from license_server.licenses.terms import LicenseTerms, effective_terms
from license_server.lifecycle.status import LicenseFacts


class Customer(Base):
    __tablename__ = "customers"
    # the console's customer search: a name prefix in any case
    __table_args__ = (Index("ix_customers_name_lower", func.lower(text("name"))),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    contact_email: Mapped[str | None] = mapped_column(String(320))
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Plan(Base):
    __tablename__ = "plans"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    terms: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The hosted half's terms (price, quotas, features, credits, rate limits), validated by billing.plans.terms;
    # empty for a plan that only backs licenses.
    billing: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class License(Base):
    __tablename__ = "licenses"
    __table_args__ = (
        Index("ix_licenses_status_expires_at", "status", "expires_at"),
        Index("ix_licenses_customer_id", "customer_id"),
        # the console: the license list's keyset order, and licenses gone quiet on the dashboard
        Index("ix_licenses_created_at_id", "created_at", "id"),
        Index("ix_licenses_status_created_at_id", "status", "created_at", "id"),
        Index("ix_licenses_expires_at", "expires_at"),
        # The sweep's only way in: the licenses whose status can have changed since (lifecycle.transitions).
        Index("ix_licenses_next_transition_at", "next_transition_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id", ondelete="RESTRICT"))
    plan_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("plans.id", ondelete="RESTRICT"))
    # Only a keyed hash of the license key is stored; the hint (last characters) helps staff recognise it.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_hint: Mapped[str] = mapped_column(String(16))
    starts_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    terms: Mapped[dict[str, Any]] = mapped_column(default=dict)
    notes: Mapped[str] = mapped_column(Text, default="")
    extra_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    suspended_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    first_activated_at: Mapped[datetime | None]
    last_check_in_at: Mapped[datetime | None]
    # Derived from the dates and effective terms whenever either changes, so the sweep is one set-based statement:
    # expiring_at = expires_at - notice; grace_ends_at = expires_at + grace;
    # heartbeat_deadline = (last check-in or first activation) + heartbeat window.
    expiring_at: Mapped[datetime]
    grace_ends_at: Mapped[datetime]
    heartbeat_deadline: Mapped[datetime | None]
    heartbeat_seconds: Mapped[int] = mapped_column(Integer)
    enforcement: Mapped[str] = mapped_column(String(16))
    # Materialised from compute_status for queries and counts; reads always recompute. Written only by
    # lifecycle.transitions (the one transition, which also emits the events of each change).
    status: Mapped[str] = mapped_column(String(16))
    status_reason: Mapped[str] = mapped_column(String(32))
    previous_status: Mapped[str | None] = mapped_column(String(16))
    status_changed_at: Mapped[datetime | None]
    # When compute_status can next give another answer (lifecycle.status.next_transition_at; None: only a change of
    # the facts can), or a past instant when the stored status is stale. Written with the status by
    # lifecycle.transitions and by the statements that change facts in bulk (the check-in flush).
    next_transition_at: Mapped[datetime | None]
    # Set by the set-based transition on the rows it changes, so it emits events for exactly those rows.
    sweep_mark: Mapped[int | None] = mapped_column(BigIntId)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    customer: Mapped[Customer] = relationship(lazy="raise")
    plan: Mapped[Plan | None] = relationship(lazy="raise")

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def is_suspended(self) -> bool:
        return self.suspended_at is not None

    def effective_terms(self, plan: Plan | None) -> LicenseTerms:
        return effective_terms(plan.terms if plan else None, self.terms)

    def facts(self, terms: LicenseTerms) -> LicenseFacts:
        return LicenseFacts(
            starts_at=self.starts_at,
            expires_at=self.expires_at,
            notice=terms.notice,
            grace=terms.grace,
            heartbeat_window=terms.heartbeat_window,
            suspended=self.is_suspended,
            revoked=self.is_revoked,
            first_activated_at=self.first_activated_at,
            last_check_in_at=self.last_check_in_at,
        )

    def refresh_schedule(self, terms: LicenseTerms) -> None:
        """Recompute the derived columns the sweep reads; call whenever dates or terms change."""
        self.expiring_at = self.expires_at - terms.notice
        self.grace_ends_at = self.expires_at + terms.grace
        self.heartbeat_seconds = int(terms.heartbeat_window.total_seconds())
        self.enforcement = terms.enforcement.value
        last_seen = self.last_check_in_at or self.first_activated_at
        self.heartbeat_deadline = last_seen + terms.heartbeat_window if last_seen else None

    def suspend(self, now: datetime) -> None:
        self.suspended_at = now

    def reinstate(self) -> None:
        self.suspended_at = None

    def revoke(self, now: datetime) -> None:
        self.revoked_at = now

    def renew(self, expires_at: datetime) -> None:
        self.expires_at = expires_at


class InnerApiLicenseSettings(Base):
    """Per-license settings of Dify's inner API. A license without a row has the defaults.

    Declared with the licenses rather than in inner_api: the licenses service stamps the SSO change times in the
    transaction that changes terms (``licenses.sso_changes``); the inner API reads them and sets the default workspace.
    """

    __tablename__ = "inner_api_license_settings"

    license_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("licenses.id", ondelete="CASCADE"), primary_key=True)
    # A Dify workspace (tenant) id that new accounts join; None: no default workspace.
    default_workspace_id: Mapped[str | None] = mapped_column(String(36))
    # When the effective web-app / sign-in SSO switches last changed; None: not since the license was issued.
    sso_app_changed_at: Mapped[datetime | None]
    sso_signin_changed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
