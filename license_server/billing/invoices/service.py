"""Invoices: gather the facts, apply the rule (``calculation.compute_invoice``), write; read, preview, void.

Issuing is set-based per batch: one transaction per batch of due subscriptions locks the invoice number series
(``SELECT ... FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), re-reads which of them still lack their
period's invoice, gathers every fact with one query per kind, inserts invoices, lines and ``invoice.issued`` events,
and advances the series by as many numbers as it issued. A rollback gives the numbers back, so the series has no
gaps; the unique (subscription, period_start) makes a second run, on any replica, issue nothing twice.

The arrears window of an account's invoice starts where its previous invoice's window ended (or one period back
for its first), so flex credits and metered usage are billed exactly once even across plan changes or a missed run.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.audit import record_audit
from license_server.auth.tokens import Actor
from license_server.billing.accounts.models import BillingAccount, BillingPlatform, Subscription, SubscriptionStatus
from license_server.billing.clocks.models import TestClockAccount
from license_server.billing.credits.models import CreditMovement, MovementKind
from license_server.billing.credits.service import credit_cycle
from license_server.billing.invoices.calculation import (
    ZERO,
    ComputedInvoice,
    InvoiceFacts,
    compute_invoice,
)
from license_server.billing.invoices.models import (
    CreditNote,
    Invoice,
    InvoiceLine,
    InvoicePdf,
    InvoiceStatus,
    NumberSequence,
)
from license_server.billing.periods import Period, period_containing
from license_server.billing.plans.terms import BillingTerms, billing_terms
from license_server.billing.sql import upsert_insert
from license_server.billing.subscriptions import service as subscriptions
from license_server.billing.usage.models import UsageEvent
from license_server.errors import InvoiceNotFound, InvoiceStateConflict, SubscriptionNotFound, ValidationFailed
from license_server.events.models import Event
from license_server.events.service import EventType
from license_server.licenses.models import Plan

INVOICE_SERIES = "invoice"
CREDIT_NOTE_SERIES = "credit_note"
# Subscriptions that are billed at their period start. A running trial is not (its fee starts when the lifecycle
# makes it active); paused and canceled ones are not.
INVOICED_STATUSES = (SubscriptionStatus.ACTIVE.value, SubscriptionStatus.PAST_DUE.value)
BATCH = 500
_INVOICES = cast(Table, Invoice.__table__)
_LINES = cast(Table, InvoiceLine.__table__)
_EVENTS = cast(Table, Event.__table__)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class IssuingTerms:
    """What the settings say about issuing: payment terms and the numbering of the series."""

    net_days: int = 14
    number_prefix: str = "INV-"
    credit_note_prefix: str = "CN-"
    # How long an open invoice may stay unpaid after its due date before its subscription is past due.
    payment_grace: timedelta = timedelta(days=3)

    @classmethod
    def of(cls, settings: Any) -> IssuingTerms:
        return cls(
            settings.invoice_net_days,
            settings.invoice_number_prefix,
            settings.credit_note_number_prefix,
            timedelta(days=settings.payment_grace_days),
        )


def format_number(prefix: str, value: int) -> str:
    return f"{prefix}{value:06d}"


# -- facts ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Candidate:
    subscription_id: uuid.UUID
    account_id: uuid.UUID
    external_id: str
    platform_id: uuid.UUID
    anchor: datetime
    plan_code: str
    plan_name: str
    terms: BillingTerms
    period: Period


def invoice_period(now: datetime, anchor: datetime) -> Period:
    """The monthly period an invoice belongs to: invoices are monthly because flex credits are billed monthly
    whatever the plan's interval (seed 003); a yearly plan's fee appears in the month its year starts."""
    return period_containing(now, anchor)


def plan_period(period: Period, anchor: datetime, interval: str) -> Period | None:
    """The plan interval billed in advance on the invoice of ``period``, or None when it starts none."""
    cycle = credit_cycle(period.start, anchor, interval)
    return cycle if cycle.start == period.start else None


def previous_period_start(period: Period, anchor: datetime) -> datetime:
    return period_containing(period.start - _MICROSECOND, anchor).start


@dataclass
class _Usage:
    """Flex debits and usage events of some accounts over a time range, to be summed per window."""

    flex: dict[uuid.UUID, list[tuple[datetime, Decimal]]] = field(default_factory=lambda: defaultdict(list))
    # (occurred_at, created_at, line items)
    metered: dict[uuid.UUID, list[tuple[datetime, datetime, list[dict[str, Any]]]]] = field(
        default_factory=lambda: defaultdict(list)
    )

    def flex_in(self, account_id: uuid.UUID, window: Period) -> Decimal:
        return sum((amount for at, amount in self.flex.get(account_id, ()) if window.contains(at)), ZERO)

    def metered_in(self, account_id: uuid.UUID, window: Period, late_after: datetime | None) -> dict[str, Decimal]:
        """Events of the window, and events of earlier (billed) windows that were recorded after the account's last
        invoice was issued (``late_after``): a platform that reports usage late is billed for it on the next
        invoice, not never."""
        totals: dict[str, Decimal] = defaultdict(lambda: ZERO)
        for at, created, items in self.metered.get(account_id, ()):
            late = late_after is not None and at < window.start and created > late_after
            if window.contains(at) or late:
                for item in items:
                    totals[str(item.get("type", "other"))] += Decimal(str(item.get("cost", "0")))
        return dict(totals)


async def _usage(
    session: AsyncSession,
    account_ids: Sequence[uuid.UUID],
    start: datetime,
    end: datetime,
    late_after: datetime | None,
) -> _Usage:
    """Flex debits and events in [start, end), and events before ``start`` recorded after ``late_after``."""
    usage = _Usage()
    if not account_ids:
        return usage
    if late_after is not None:
        for account_id, at, created, items in await session.execute(
            select(UsageEvent.account_id, UsageEvent.occurred_at, UsageEvent.created_at, UsageEvent.line_items).where(
                UsageEvent.account_id.in_(account_ids),
                UsageEvent.occurred_at < start,
                UsageEvent.created_at > late_after,
            )
        ):
            usage.metered[account_id].append((at, created, list(items or [])))
    if start >= end:
        return usage
    for account_id, at, amount in await session.execute(
        select(CreditMovement.account_id, CreditMovement.occurred_at, CreditMovement.flex).where(
            CreditMovement.account_id.in_(account_ids),
            CreditMovement.kind == MovementKind.DEBIT.value,
            CreditMovement.flex > 0,
            CreditMovement.occurred_at >= start,
            CreditMovement.occurred_at < end,
        )
    ):
        usage.flex[account_id].append((at, amount))
    for account_id, at, created, items in await session.execute(
        select(UsageEvent.account_id, UsageEvent.occurred_at, UsageEvent.created_at, UsageEvent.line_items).where(
            UsageEvent.account_id.in_(account_ids), UsageEvent.occurred_at >= start, UsageEvent.occurred_at < end
        )
    ):
        usage.metered[account_id].append((at, created, list(items or [])))
    return usage


@dataclass(frozen=True)
class _Billed:
    """How far an account's invoices have billed: the end of their last arrears window, and when the last was issued."""

    until: datetime
    issued_at: datetime


async def _billed(session: AsyncSession, account_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, _Billed]:
    rows = await session.execute(
        select(Invoice.account_id, func.max(Invoice.arrears_end), func.max(Invoice.issued_at))
        .where(Invoice.account_id.in_(account_ids))
        .group_by(Invoice.account_id)
    )
    return {row[0]: _Billed(row[1], row[2]) for row in rows}


def _arrears_window(candidate: _Candidate, billed: _Billed | None, end: datetime) -> Period:
    start = billed.until if billed is not None else previous_period_start(candidate.period, candidate.anchor)
    return Period(min(start, end), end)


def _facts(candidate: _Candidate, arrears: Period, usage: _Usage, billed: _Billed | None) -> InvoiceFacts:
    terms = candidate.terms
    return InvoiceFacts(
        currency=terms.currency,
        plan_code=candidate.plan_code,
        plan_name=candidate.plan_name,
        plan_price=terms.price,
        interval=terms.interval,
        flex_credit_price=terms.flex_credit_price,
        period=candidate.period,
        plan_period=plan_period(candidate.period, candidate.anchor, terms.interval),
        arrears=arrears,
        flex_used=usage.flex_in(candidate.account_id, arrears),
        metered=usage.metered_in(candidate.account_id, arrears, billed.issued_at if billed else None),
    )


def _candidate_query() -> Any:
    return (
        select(Subscription, BillingAccount.external_id, BillingAccount.platform_id, Plan.code, Plan.name, Plan.billing)
        .join(Plan, Plan.id == Subscription.plan_id)
        .join(BillingAccount, BillingAccount.id == Subscription.account_id)
    )


def _candidate(row: Any, now: datetime) -> _Candidate:
    subscription, external_id, platform_id, code, name, billing = row
    return _Candidate(
        subscription_id=subscription.id,
        account_id=subscription.account_id,
        external_id=external_id,
        platform_id=platform_id,
        anchor=subscription.anchor_at,
        plan_code=code,
        plan_name=name,
        terms=billing_terms(billing),
        period=invoice_period(now, subscription.anchor_at),
    )


# -- issuing ----------------------------------------------------------------------------------------------------
async def _lock_series(session: AsyncSession, name: str) -> int:
    """The series' next number, its row locked until the transaction ends (created at 1 on first use)."""
    await session.execute(
        upsert_insert(session.get_bind().dialect.name, NumberSequence.__table__)
        .values(name=name, next_value=1)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    value = await session.scalar(select(NumberSequence.next_value).where(NumberSequence.name == name).with_for_update())
    assert value is not None
    return int(value)


async def _advance_series(session: AsyncSession, name: str, to: int) -> None:
    await session.execute(update(NumberSequence).where(NumberSequence.name == name).values(next_value=to))


async def begin_write(session: AsyncSession) -> None:
    """A write transaction: SQLite takes its database write lock now rather than at the first write."""
    await session.rollback()
    if session.get_bind().dialect.name == "sqlite":
        await session.execute(text("BEGIN IMMEDIATE"))


def _invoice_event(type_: EventType, invoice: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {"type": type_.value, "occurred_at": now, "license_id": None, "activation_id": None, "data": invoice}


def event_data(
    *,
    invoice_id: uuid.UUID,
    number: str,
    account_id: uuid.UUID,
    external_id: str,
    platform_id: uuid.UUID,
    subscription_id: uuid.UUID,
    total: Decimal,
    currency: str,
    status: str,
    period: Period,
    due_at: datetime,
) -> dict[str, Any]:
    return {
        "invoice_id": str(invoice_id),
        "number": number,
        "account_id": str(account_id),
        "external_id": external_id,
        "platform_id": str(platform_id),
        "subscription_id": str(subscription_id),
        "total": format(total, "f"),
        "currency": currency,
        "status": status,
        "period_start": period.start.isoformat(),
        "period_end": period.end.isoformat(),
        "due_at": due_at.isoformat(),
    }


async def _issue_batch(
    session: AsyncSession, candidates: list[_Candidate], *, now: datetime, terms: IssuingTerms
) -> list[tuple[uuid.UUID, datetime]]:
    """Issue the batch in one transaction; returns (subscription, due date) of each issued invoice left to pay."""
    await begin_write(session)
    try:
        next_number = await _lock_series(session, INVOICE_SERIES)
        issued_keys = {
            (sub, start)
            for sub, start in await session.execute(
                select(Invoice.subscription_id, Invoice.period_start).where(
                    Invoice.subscription_id.in_([c.subscription_id for c in candidates]),
                    Invoice.period_start >= min(c.period.start for c in candidates),
                )
            )
        }
        due = sorted(
            (c for c in candidates if (c.subscription_id, c.period.start) not in issued_keys),
            key=lambda c: (str(c.account_id), c.period.start, str(c.subscription_id)),
        )
        if not due:
            await session.rollback()
            return []
        accounts = list({c.account_id for c in due})
        billed = await _billed(session, accounts)
        starts = [_arrears_window(c, billed.get(c.account_id), c.period.start).start for c in due]
        issued_before = [b.issued_at for b in billed.values()]
        usage = await _usage(
            session, accounts, min(starts), max(c.period.start for c in due), min(issued_before, default=None)
        )
        invoices, lines, events = [], [], []
        for candidate in due:
            previous = billed.get(candidate.account_id)
            arrears = _arrears_window(candidate, previous, candidate.period.start)
            computed = compute_invoice(_facts(candidate, arrears, usage, previous))
            billed[candidate.account_id] = _Billed(arrears.end, now)
            row = _invoice_row(
                candidate, computed, arrears, format_number(terms.number_prefix, next_number), now, terms
            )
            next_number += 1
            invoices.append(row)
            lines.extend(_line_rows(row["id"], computed))
            data = event_data(
                invoice_id=row["id"],
                number=row["number"],
                account_id=candidate.account_id,
                external_id=candidate.external_id,
                platform_id=candidate.platform_id,
                subscription_id=candidate.subscription_id,
                total=computed.total,
                currency=computed.currency,
                status=row["status"],
                period=candidate.period,
                due_at=row["due_at"],
            )
            events.append(_invoice_event(EventType.INVOICE_ISSUED, data, now))
            if row["status"] == InvoiceStatus.PAID:  # nothing to pay: paid as issued
                events.append(_invoice_event(EventType.INVOICE_PAID, data, now))
        await session.execute(insert(_INVOICES), invoices)
        if lines:
            await session.execute(insert(_LINES), lines)
        await session.execute(insert(_EVENTS), events)
        await _advance_series(session, INVOICE_SERIES, next_number)
        await session.commit()
        return [(row["subscription_id"], row["due_at"]) for row in invoices if row["status"] == InvoiceStatus.OPEN]
    except BaseException:
        await session.rollback()
        raise


def _invoice_row(
    candidate: _Candidate,
    computed: ComputedInvoice,
    arrears: Period,
    number: str,
    now: datetime,
    terms: IssuingTerms,
) -> dict[str, Any]:
    paid = computed.total == ZERO
    return {
        "id": uuid.uuid4(),
        "number": number,
        "account_id": candidate.account_id,
        "subscription_id": candidate.subscription_id,
        "plan_code": candidate.plan_code,
        "period_start": candidate.period.start,
        "period_end": candidate.period.end,
        "arrears_start": arrears.start,
        "arrears_end": arrears.end,
        "currency": computed.currency,
        "subtotal": computed.subtotal,
        "total": computed.total,
        "status": (InvoiceStatus.PAID if paid else InvoiceStatus.OPEN).value,
        "issued_at": now,
        "due_at": now + timedelta(days=terms.net_days),
        "paid_at": now if paid else None,
        "voided_at": None,
        "void_reason": None,
    }


def _line_rows(invoice_id: uuid.UUID, computed: ComputedInvoice) -> list[dict[str, Any]]:
    return [
        {
            "invoice_id": invoice_id,
            "position": position,
            "kind": line.kind.value,
            "description": line.description,
            "quantity": line.quantity,
            "unit_price": line.unit_price,
            "amount": line.amount,
            "period_start": line.period_start,
            "period_end": line.period_end,
        }
        for position, line in enumerate(computed.lines, start=1)
    ]


async def issue_due_invoices(
    session: AsyncSession,
    *,
    now: datetime,
    account_ids: Sequence[uuid.UUID] | None = None,
    terms: IssuingTerms | None = None,
    batch: int = BATCH,
) -> int:
    """Issue the invoice of every subscription (of ``account_ids``, or all) whose current period has begun and has
    none yet; returns how many were issued. Runs its own transactions (the session must hold no uncommitted
    writes); safe to run again and on several replicas at once."""
    terms = terms or IssuingTerms()
    query = _candidate_query().where(Subscription.status.in_(INVOICED_STATUSES), Subscription.anchor_at <= now)
    if account_ids is not None:
        if not account_ids:
            return 0
        query = query.where(Subscription.account_id.in_(list(account_ids)))
    else:  # real time: accounts that follow a test clock are issued when their clock advances
        query = query.where(Subscription.account_id.not_in(select(TestClockAccount.account_id)))
    candidates = [_candidate(row, now) for row in (await session.execute(query)).all()]
    await session.rollback()
    # Only those without their current period's invoice go on to the locked batches, which check again.
    issued = set()
    for chunk in _chunks(candidates, 5000):
        issued |= {
            (sub, start)
            for sub, start in await session.execute(
                select(Invoice.subscription_id, Invoice.period_start).where(
                    Invoice.subscription_id.in_([c.subscription_id for c in chunk]),
                    Invoice.period_start >= min(c.period.start for c in chunk),
                )
            )
        }
    await session.rollback()
    due = [c for c in candidates if (c.subscription_id, c.period.start) not in issued]
    # An account's subscriptions stay in one batch, so its arrears windows follow each other within it.
    due.sort(key=lambda c: str(c.account_id))
    count = 0
    start = 0
    while start < len(due):
        end = min(start + batch, len(due))
        while end < len(due) and due[end].account_id == due[end - 1].account_id:
            end += 1
        to_pay = await _issue_batch(session, due[start:end], now=now, terms=terms)
        count += len(to_pay)
        # The lifecycle learns each amount due (after the issuing commit): unpaid past the grace, it is past due.
        await subscriptions.record_payments_due(session, to_pay, now=now, grace=terms.payment_grace)
        start = end
    return count


def _chunks(items: list[_Candidate], size: int) -> list[list[_Candidate]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# -- preview ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preview:
    subscription_id: uuid.UUID
    account_id: uuid.UUID
    plan_code: str
    period: Period
    arrears: Period
    computed: ComputedInvoice
    issue_at: datetime  # when it will be issued: the period's start (now, if that has passed)


async def preview_invoices(session: AsyncSession, *, account_id: uuid.UUID, now: datetime) -> list[Preview]:
    """The next invoice of each of the account's billable subscriptions, on the facts so far; nothing written.

    The next invoice is the current period's when it has not been issued yet, else the next period's, with the
    usage recorded so far in its arrears window."""
    rows = (
        await session.execute(
            _candidate_query().where(
                Subscription.account_id == account_id,
                Subscription.status.not_in([SubscriptionStatus.CANCELED.value]),
            )
        )
    ).all()
    previews = []
    billed = await _billed(session, [account_id])
    for row in sorted(rows, key=lambda r: (r[0].anchor_at, str(r[0].id))):
        candidate = _candidate(row, max(now, row[0].anchor_at))
        issued = await session.scalar(
            select(Invoice.id).where(
                Invoice.subscription_id == candidate.subscription_id,
                Invoice.period_start == candidate.period.start,
            )
        )
        if issued is not None:
            candidate = _candidate(row, candidate.period.end)
        # Its arrears window ends where the invoice's will: what is recorded so far is all it holds yet.
        previous = billed.get(account_id)
        arrears = _arrears_window(candidate, previous, candidate.period.start)
        late_after = previous.issued_at if previous else None
        usage = await _usage(session, [account_id], arrears.start, arrears.end, late_after)
        billed[account_id] = _Billed(arrears.end, now)
        previews.append(
            Preview(
                subscription_id=candidate.subscription_id,
                account_id=account_id,
                plan_code=candidate.plan_code,
                period=candidate.period,
                arrears=arrears,
                computed=compute_invoice(_facts(candidate, arrears, usage, previous)),
                issue_at=max(candidate.period.start, now),
            )
        )
    return previews


# -- reads ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InvoiceView:
    invoice: Invoice
    lines: list[InvoiceLine]
    credit_notes: list[CreditNote]
    external_id: str
    platform_id: uuid.UUID
    platform_name: str


async def list_invoices(
    session: AsyncSession,
    *,
    account_id: uuid.UUID | None = None,
    status: InvoiceStatus | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Invoice]:
    query = select(Invoice).order_by(Invoice.issued_at.desc(), Invoice.number.desc()).limit(limit).offset(offset)
    if account_id is not None:
        query = query.where(Invoice.account_id == account_id)
    if status is not None:
        query = query.where(Invoice.status == status.value)
    return list((await session.scalars(query)).all())


async def get_invoice(
    session: AsyncSession,
    *,
    number: str | None = None,
    invoice_id: uuid.UUID | None = None,
    account_id: uuid.UUID | None = None,
) -> InvoiceView:
    """One invoice with its lines and credit notes, by number or id; ``account_id`` confines it to one account
    (the platform API), answering not found for another account's invoice."""
    query = (
        select(Invoice, BillingAccount.external_id, BillingPlatform.id, BillingPlatform.name)
        .join(BillingAccount, BillingAccount.id == Invoice.account_id)
        .join(BillingPlatform, BillingPlatform.id == BillingAccount.platform_id)
    )
    if number is not None:
        query = query.where(Invoice.number == number)
    elif invoice_id is not None:
        query = query.where(Invoice.id == invoice_id)
    else:
        raise ValidationFailed("name an invoice by number or id", field="number")
    if account_id is not None:
        query = query.where(Invoice.account_id == account_id)
    row = (await session.execute(query)).first()
    if row is None:
        raise InvoiceNotFound(f"no invoice {number or invoice_id}", field="number")
    invoice, external_id, platform_id, platform_name = row
    lines = list(
        (
            await session.scalars(
                select(InvoiceLine).where(InvoiceLine.invoice_id == invoice.id).order_by(InvoiceLine.position)
            )
        ).all()
    )
    notes = list(
        (
            await session.scalars(
                select(CreditNote)
                .where(CreditNote.invoice_id == invoice.id)
                .order_by(CreditNote.issued_at, CreditNote.number)
            )
        ).all()
    )
    return InvoiceView(invoice, lines, notes, external_id, platform_id, platform_name)


async def get_invoices(session: AsyncSession, invoice_ids: Sequence[uuid.UUID]) -> list[InvoiceView]:
    """Many invoices with their lines and credit notes in three queries (the PDF job's batches)."""
    if not invoice_ids:
        return []
    rows = (
        await session.execute(
            select(Invoice, BillingAccount.external_id, BillingPlatform.id, BillingPlatform.name)
            .join(BillingAccount, BillingAccount.id == Invoice.account_id)
            .join(BillingPlatform, BillingPlatform.id == BillingAccount.platform_id)
            .where(Invoice.id.in_(list(invoice_ids)))
        )
    ).all()
    lines: dict[uuid.UUID, list[InvoiceLine]] = defaultdict(list)
    for line in await session.scalars(
        select(InvoiceLine).where(InvoiceLine.invoice_id.in_(list(invoice_ids))).order_by(InvoiceLine.position)
    ):
        lines[line.invoice_id].append(line)
    notes: dict[uuid.UUID, list[CreditNote]] = defaultdict(list)
    for note in await session.scalars(
        select(CreditNote).where(CreditNote.invoice_id.in_(list(invoice_ids))).order_by(CreditNote.issued_at)
    ):
        notes[note.invoice_id].append(note)
    views = {
        invoice.id: InvoiceView(invoice, lines[invoice.id], notes[invoice.id], external_id, platform_id, name)
        for invoice, external_id, platform_id, name in rows
    }
    return [views[invoice_id] for invoice_id in invoice_ids if invoice_id in views]


# -- status moves (the one writer of an invoice's status) ----------------------------------------------------------
def _event_of(view: InvoiceView) -> dict[str, Any]:
    invoice = view.invoice
    return event_data(
        invoice_id=invoice.id,
        number=invoice.number,
        account_id=invoice.account_id,
        external_id=view.external_id,
        platform_id=view.platform_id,
        subscription_id=invoice.subscription_id,
        total=invoice.total,
        currency=invoice.currency,
        status=invoice.status,
        period=Period(invoice.period_start, invoice.period_end),
        due_at=invoice.due_at,
    )


def mark_paid(session: AsyncSession, view: InvoiceView, *, now: datetime) -> bool:
    """open -> paid, in the caller's transaction, with ``invoice.paid``; False if it was paid already."""
    invoice = view.invoice
    if invoice.status == InvoiceStatus.PAID:
        return False
    if invoice.status != InvoiceStatus.OPEN:
        raise InvoiceStateConflict(f"invoice {invoice.number} is {invoice.status}; it cannot be paid", field="number")
    invoice.status, invoice.paid_at = InvoiceStatus.PAID.value, now
    session.add(Event(type=EventType.INVOICE_PAID.value, occurred_at=now, data=_event_of(view)))
    return True


def emit_payment_failed(session: AsyncSession, view: InvoiceView, *, now: datetime, detail: dict[str, Any]) -> None:
    session.add(Event(type=EventType.PAYMENT_FAILED.value, occurred_at=now, data={**_event_of(view), **detail}))


async def void_invoice(session: AsyncSession, *, actor: Actor, number: str, reason: str, now: datetime) -> InvoiceView:
    """open -> void (idempotent: a void invoice is returned as it is). A paid invoice is corrected by a refund and
    its credit note, never voided."""
    view = await get_invoice(session, number=number)
    invoice = view.invoice
    if invoice.status == InvoiceStatus.VOID:
        return view
    if invoice.status != InvoiceStatus.OPEN:
        raise InvoiceStateConflict(
            f"invoice {number} is {invoice.status}; only an open invoice can be voided (refund a paid one)",
            field="number",
        )
    invoice.status, invoice.voided_at, invoice.void_reason = InvoiceStatus.VOID.value, now, reason
    session.add(Event(type=EventType.INVOICE_VOIDED.value, occurred_at=now, data={**_event_of(view), "reason": reason}))
    await record_audit(
        session,
        actor=actor,
        action="billing.invoice_voided",
        target_type="billing_invoice",
        target_id=invoice.id,
        detail={"number": number, "reason": reason},
        clock=lambda: now,
    )
    await session.commit()
    return view


async def issue_credit_note(
    session: AsyncSession, view: InvoiceView, *, amount: Decimal, reason: str, now: datetime, prefix: str
) -> CreditNote:
    """A numbered credit note against an issued invoice, in the caller's transaction (its series locked there)."""
    value = await _lock_series(session, CREDIT_NOTE_SERIES)
    note = CreditNote(
        id=uuid.uuid4(),
        number=format_number(prefix, value),
        invoice_id=view.invoice.id,
        amount=amount,
        currency=view.invoice.currency,
        reason=reason,
        issued_at=now,
    )
    session.add(note)
    await _advance_series(session, CREDIT_NOTE_SERIES, value + 1)
    return note


# -- PDFs -------------------------------------------------------------------------------------------------------
async def cached_pdf(session: AsyncSession, invoice_id: uuid.UUID) -> bytes | None:
    return await session.scalar(select(InvoicePdf.content).where(InvoicePdf.invoice_id == invoice_id))


async def store_pdf(session: AsyncSession, invoice_id: uuid.UUID, content: bytes, now: datetime) -> None:
    """Insert-if-absent: two renderers of one invoice make the same bytes' worth of PDF, the first one stays."""
    await session.execute(
        upsert_insert(session.get_bind().dialect.name, InvoicePdf.__table__)
        .values(invoice_id=invoice_id, content=content, rendered_at=now)
        .on_conflict_do_nothing(index_elements=["invoice_id"])
    )


async def invoices_without_pdf(session: AsyncSession, *, limit: int) -> list[uuid.UUID]:
    rows = await session.scalars(
        select(Invoice.id)
        .where(~select(InvoicePdf.invoice_id).where(InvoicePdf.invoice_id == Invoice.id).exists())
        .order_by(Invoice.issued_at, Invoice.number)
        .limit(limit)
    )
    return list(rows.all())


async def subscription_account(session: AsyncSession, subscription_id: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    """The (account id, platform id) of a subscription."""
    row = (
        await session.execute(
            select(Subscription.account_id, BillingAccount.platform_id)
            .join(BillingAccount, BillingAccount.id == Subscription.account_id)
            .where(Subscription.id == subscription_id)
        )
    ).first()
    if row is None:
        raise SubscriptionNotFound(f"no subscription {subscription_id}", field="subscription_id")
    return row[0], row[1]
