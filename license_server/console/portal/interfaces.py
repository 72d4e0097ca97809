"""What the portal needs from domains still being built (invoices, plan changes), as interfaces.

The Invoices page and the Plans page's upgrade / downgrade buttons call these, through ``PortalServices`` in the app
state under ``PORTAL_STATE_KEY``. The app factory wires invoices (``service.AccountInvoices``, over
``billing/invoices``); plan changes stay unwired until the subscriptions service offers them, and until then the
Plans page compares plans without the change buttons (an app without ``PortalServices`` says it has no invoices).
The portal holds no invoice or plan-change rule of its own.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.tokens import Actor

PORTAL_STATE_KEY = "portal"


@dataclass(frozen=True)
class InvoiceSummary:
    id: uuid.UUID
    number: str
    period_start: datetime
    period_end: datetime
    total: Decimal
    currency: str
    status: str  # draft | open | paid | past_due | void
    due_at: datetime | None

    @property
    def past_due(self) -> bool:
        return self.status == "past_due"


class InvoiceSource(Protocol):
    async def list_invoices(self, session: AsyncSession, *, account_id: uuid.UUID) -> list[InvoiceSummary]:
        """The account's invoices, newest first."""
        ...

    async def invoice_pdf(self, session: AsyncSession, *, account_id: uuid.UUID, invoice_id: uuid.UUID) -> bytes:
        """The invoice as a PDF; raises a NotFound error for an invoice of another account."""
        ...


@dataclass(frozen=True)
class PlanChange:
    plan_code: str
    effective_at: datetime  # now for an upgrade, the period's end for a downgrade (seed 002)
    immediate: bool


class PlanChanger(Protocol):
    async def change_plan(
        self, session: AsyncSession, *, actor: Actor, account_id: uuid.UUID, plan_code: str, idempotency_key: str
    ) -> PlanChange:
        """Upgrade at once or schedule a downgrade for the period's end; which one is the service's rule."""
        ...


@dataclass
class PortalServices:
    """The optional collaborators of the portal's pages; None: not wired in this build."""

    invoices: InvoiceSource | None = None
    plan_changes: PlanChanger | None = None
