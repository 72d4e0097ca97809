"""The subscription lifecycle: the one writer of a subscription's status, plan changes, renewals, payments' outcomes.

Every write here is one transaction that holds the subscription's lock from its first read to its commit
(PostgreSQL: the row ``FOR UPDATE``; SQLite: ``BEGIN IMMEDIATE``), changes the lifecycle's facts, and then lets
``settle`` write the status ``compute_subscription_status`` decides from them, emitting each transition's events in
that same transaction. So an event is emitted exactly once, whoever causes the change (a staff verb, a payment, the
renewal job, a test clock), and running a job again emits nothing. Verbs are idempotent by the state they reach:
pausing a paused subscription, or changing to the plan it is on, changes nothing and emits nothing.

The time of every computation is the account's (``clocks.service.account_clock``): a test clock's frozen instant for
an account attached to one, the process clock otherwise.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.audit import record_audit
from license_server.auth.tokens import Actor
from license_server.billing.accounts.models import BillingAccount, Subscription, SubscriptionStatus
from license_server.billing.accounts.snapshots import SubscriptionView
from license_server.billing.clocks.service import account_clock, clocked_account_ids
from license_server.billing.credits.service import credit_cycle
from license_server.billing.periods import Period, add_months
from license_server.billing.plans.terms import BillingTerms, billing_terms
from license_server.billing.state import BillingState
from license_server.billing.subscriptions.models import PlanChangeKind, PlanChangeState, SubscriptionPlanChange
from license_server.billing.subscriptions.proration import prorate_upgrade
from license_server.billing.subscriptions.status import (
    StatusDecision,
    SubscriptionFacts,
    compute_subscription_status,
    transition_events,
)
from license_server.clock import Clock, as_utc, utcnow
from license_server.errors import PlanNotFound, SubscriptionCanceled, SubscriptionNotFound, ValidationFailed
from license_server.events.service import EventType, emit_event
from license_server.licenses.models import Plan
from license_server.replicas.invalidation import Topic, publish

T = TypeVar("T")
TRIAL_NOTICE = timedelta(days=3)  # subscription.trial_will_end this long before the trial ends
DEFAULT_PAYMENT_GRACE = timedelta(days=3)
RENEWAL_BATCH = 500


# -- reading ------------------------------------------------------------------------------------------------------
def facts_of(subscription: Subscription) -> SubscriptionFacts:
    def utc(moment: datetime | None) -> datetime | None:
        return as_utc(moment) if moment is not None else None

    return SubscriptionFacts(
        trial_ends_at=utc(subscription.trial_ends_at),
        cancel_at=utc(subscription.cancel_at),
        paused_at=utc(subscription.paused_at),
        payment_failed_at=utc(subscription.payment_failed_at),
        payment_overdue_at=utc(subscription.payment_overdue_at),
    )


def decide(subscription: Subscription, now: datetime) -> StatusDecision:
    """What the status is at ``now`` (the stored status is the renewal job's last answer; this is never stale)."""
    return compute_subscription_status(facts_of(subscription), now)


def term_months(terms: BillingTerms) -> int:
    return 12 if terms.interval == "year" else 1


def term_containing(anchor: datetime, now: datetime, terms: BillingTerms) -> Period:
    """The billing term (a month, or twelve on a yearly plan) from the anchor that contains ``now``."""
    return credit_cycle(now, as_utc(anchor), terms.interval)


def start_lifecycle(subscription: Subscription, terms: BillingTerms, now: datetime) -> None:
    """A new subscription's current term and first status (``accounts.service`` creates subscriptions through it)."""
    term = term_containing(subscription.anchor_at, now, terms)
    subscription.current_period_start, subscription.current_period_end = term.start, term.end
    subscription.status = decide(subscription, now).status.value


@dataclass(frozen=True)
class SubscriptionState:
    """A subscription as the APIs show it: the view, the status decided at the account's now, and the pending plan."""

    view: SubscriptionView
    decision: StatusDecision
    pending_plan: str | None
    now: datetime


# -- the transaction and the one writer -----------------------------------------------------------------------------
@dataclass
class _Locked:
    subscription: Subscription
    plan: Plan
    account: BillingAccount
    now: datetime

    @property
    def terms(self) -> BillingTerms:
        return billing_terms(self.plan.billing)


async def _in_subscription_transaction(
    session: AsyncSession,
    subscription_id: uuid.UUID,
    work: Callable[[_Locked], Awaitable[T]],
    *,
    platform_id: uuid.UUID | None = None,
    now: datetime | None = None,
    real: Clock = utcnow,
    state: BillingState | None = None,
) -> T:
    """Run ``work`` holding the subscription's lock, then commit; anything raised rolls everything back. ``now``:
    the caller's instant (a payment's, a job's); default: the account's clock. The account's cached snapshot is
    dropped in this process afterwards (``state``), so its limits and refusals follow at once.

    ``session`` must hold no uncommitted writes: it is rolled back first (as credits' transactions are), so a caller
    (an invoice being issued, a payment being recorded) commits its own work before calling in."""
    await session.rollback()
    try:
        if session.get_bind().dialect.name == "sqlite":
            await session.execute(text("BEGIN IMMEDIATE"))
        query = (
            select(Subscription, BillingAccount)
            .join(BillingAccount, BillingAccount.id == Subscription.account_id)
            .where(Subscription.id == subscription_id)
            .with_for_update(of=Subscription)
            .execution_options(populate_existing=True)  # this session may hold an older copy of the row
        )
        if platform_id is not None:
            query = query.where(BillingAccount.platform_id == platform_id)
        row = (await session.execute(query)).first()
        if row is None:
            raise SubscriptionNotFound(f"no subscription {subscription_id}", field="subscription_id")
        subscription, account = row
        plan = await session.get(Plan, subscription.plan_id)
        assert plan is not None  # plans.id is ON DELETE RESTRICT
        if now is None:
            now = (await account_clock(session, account.id, real))()
        result = await work(_Locked(subscription, plan, account, now))
        # Every replica's account snapshot (plan, status, limits) drops at commit, and none if this rolls back; the
        # scheduler's transitions (renewals, trial ends, past due) reach the serving replicas this way too.
        await publish(session, Topic.BILLING_ACCOUNT, [f"{account.platform_id}:{account.external_id}"])
        await session.commit()
    except BaseException:
        await session.rollback()
        raise
    if state is not None:  # at once here, whatever the session's bus (SQLite has none)
        state.forget_account(account.platform_id, account.external_id)
    return result


def _event_data(locked: _Locked, **extra: Any) -> dict[str, Any]:
    sub = locked.subscription
    return {
        "subscription_id": str(sub.id),
        "account_id": str(locked.account.id),
        "platform_id": str(locked.account.platform_id),
        "external_id": locked.account.external_id,
        "plan": locked.plan.code,
        "status": sub.status,
        **extra,
    }


def _emit(session: AsyncSession, locked: _Locked, event: EventType, at: datetime, **extra: Any) -> None:
    emit_event(session, type=event, data=_event_data(locked, **extra), clock=lambda: at)


def settle(session: AsyncSession, locked: _Locked) -> StatusDecision:
    """The one writer of ``Subscription.status``: store what the rule decides at ``locked.now`` and emit the
    transition's events (none when the status is unchanged)."""
    sub, now = locked.subscription, locked.now
    decision = decide(sub, now)
    previous = SubscriptionStatus(sub.status)
    if decision.status == previous:
        return decision
    sub.status = decision.status.value
    sub.updated_at = now
    if decision.status == SubscriptionStatus.CANCELED:
        sub.canceled_at = as_utc(sub.cancel_at) if sub.cancel_at is not None else now
    for name in transition_events(previous, decision.status):
        at = now
        if name == "trial_ended" and sub.trial_ends_at is not None:
            at = min(now, as_utc(sub.trial_ends_at))
        elif name == "canceled" and sub.canceled_at is not None:
            at = as_utc(sub.canceled_at)
        _emit(
            session,
            locked,
            EventType(f"subscription.{name}"),
            at,
            previous_status=previous.value,
            reason=decision.reason,
        )
    return decision


# -- the renewal (the scheduler's job, and each test clock step) ----------------------------------------------------
async def _renew_at_boundary(session: AsyncSession, locked: _Locked) -> bool:
    """The current term ends at ``locked.now``: a cancellation due then ends it (no renewal), else a scheduled
    downgrade is applied and the next term starts (``subscription.renewed``). Whether it renewed."""
    sub, boundary = locked.subscription, locked.now
    if sub.status == SubscriptionStatus.CANCELED or (sub.cancel_at is not None and as_utc(sub.cancel_at) <= boundary):
        return False
    if sub.pending_plan_id is not None:
        await _apply_scheduled_downgrade(session, locked, boundary)
    anchor = as_utc(sub.anchor_at)
    months = (boundary.year - anchor.year) * 12 + (boundary.month - anchor.month)
    sub.current_period_start = boundary
    sub.current_period_end = add_months(anchor, months + term_months(locked.terms))
    sub.updated_at = boundary
    _emit(
        session,
        locked,
        EventType.SUBSCRIPTION_RENEWED,
        boundary,
        period_start=boundary.isoformat(),
        period_end=as_utc(sub.current_period_end).isoformat(),
    )
    return True


async def _apply_scheduled_downgrade(session: AsyncSession, locked: _Locked, boundary: datetime) -> None:
    sub = locked.subscription
    change = await _scheduled_change(session, sub.id)
    new_plan = await session.get(Plan, sub.pending_plan_id)
    old_plan = locked.plan
    sub.pending_plan_id = None
    if new_plan is None:  # deleted meanwhile (plans are ON DELETE RESTRICT, so never): nothing to apply
        return
    sub.plan_id = new_plan.id
    locked.plan = new_plan
    if change is not None:
        change.state = PlanChangeState.APPLIED.value
    _emit(
        session,
        locked,
        EventType.SUBSCRIPTION_PLAN_CHANGED,
        boundary,
        kind=PlanChangeKind.DOWNGRADE.value,
        from_plan=old_plan.code,
        to_plan=new_plan.code,
        effective_at=boundary.isoformat(),
    )


async def _scheduled_change(session: AsyncSession, subscription_id: uuid.UUID) -> SubscriptionPlanChange | None:
    return await session.scalar(
        select(SubscriptionPlanChange).where(
            SubscriptionPlanChange.subscription_id == subscription_id,
            SubscriptionPlanChange.state == PlanChangeState.SCHEDULED.value,
        )
    )


def _notify_trial_end(session: AsyncSession, locked: _Locked) -> bool:
    """``subscription.trial_will_end`` once per trial end, from three days before it (at once for a shorter trial)."""
    sub, now = locked.subscription, locked.now
    if sub.trial_ends_at is None or sub.status != SubscriptionStatus.TRIALING:
        return False
    ends = as_utc(sub.trial_ends_at)
    if not ends - TRIAL_NOTICE <= now < ends:
        return False
    if sub.trial_notice_for is not None and as_utc(sub.trial_notice_for) == ends:
        return False
    sub.trial_notice_for = ends
    _emit(
        session,
        locked,
        EventType.SUBSCRIPTION_TRIAL_WILL_END,
        max(ends - TRIAL_NOTICE, as_utc(sub.created_at)),
        trial_ends_at=ends.isoformat(),
        trial_days_remaining=decide(sub, now).trial_days_remaining,
    )
    return True


async def _roll(session: AsyncSession, locked: _Locked) -> int:
    """Bring the subscription up to ``locked.now`` in time order: at each term end passed, first what fell due
    before it (the trial's notice and end, a payment overdue), then the renewal; then what is due at ``now``. So
    the events of a subscription the job had not seen for a while (a stopped server) come out in the order they
    happened, each at its own time. Returns the renewals."""
    sub, now = locked.subscription, locked.now
    if sub.current_period_end is None:  # a subscription created before the lifecycle existed
        term = term_containing(sub.anchor_at, now, locked.terms)
        sub.current_period_start, sub.current_period_end = term.start, term.end
    renewed = 0
    try:
        while sub.status != SubscriptionStatus.CANCELED and as_utc(sub.current_period_end) <= now:
            locked.now = as_utc(sub.current_period_end)
            _notify_trial_end(session, locked)
            settle(session, locked)
            if not await _renew_at_boundary(session, locked):
                break
            renewed += 1
    finally:
        locked.now = now
    _notify_trial_end(session, locked)
    settle(session, locked)
    return renewed


@dataclass(frozen=True)
class RenewalResult:
    examined: int
    renewed: int


def _due(now: datetime) -> Any:
    """Subscriptions a run at ``now`` has something to do for (the rest it leaves alone)."""
    return (Subscription.status != SubscriptionStatus.CANCELED.value) & or_(
        Subscription.current_period_end.is_(None),
        Subscription.current_period_end <= now,
        Subscription.cancel_at <= now,
        Subscription.payment_overdue_at <= now,
        (Subscription.status == SubscriptionStatus.TRIALING.value) & (Subscription.trial_ends_at <= now + TRIAL_NOTICE),
    )


async def renew_due_subscriptions(
    session: AsyncSession,
    *,
    now: datetime,
    account_ids: Sequence[uuid.UUID] | None = None,
    state: BillingState | None = None,
    batch: int = RENEWAL_BATCH,
) -> RenewalResult:
    """The renewal job at ``now``: roll every due subscription (renewals, scheduled downgrades, cancellations at the
    period end, trial ends and their notice, overdue payments), each in its own locked transaction. ``account_ids``
    None: real time, every account not on a test clock; else only those accounts (a test clock's step). Idempotent:
    a second run at the same instant finds nothing due."""
    query = select(Subscription.id).where(_due(now)).order_by(Subscription.id).limit(batch)
    if account_ids is None:
        query = query.where(Subscription.account_id.not_in(clocked_account_ids()))
    else:
        query = query.where(Subscription.account_id.in_(list(account_ids)))
    ids = list((await session.scalars(query)).all())
    renewed = 0
    for subscription_id in ids:

        async def work(locked: _Locked) -> int:
            return await _roll(session, locked)

        renewed += await _in_subscription_transaction(session, subscription_id, work, now=now, state=state)
    return RenewalResult(examined=len(ids), renewed=renewed)


# -- payments' outcomes (the payments side's entry points) ----------------------------------------------------------
async def record_payment_outcome(
    session: AsyncSession,
    subscription_id: uuid.UUID,
    *,
    succeeded: bool,
    now: datetime,
    state: BillingState | None = None,
) -> None:
    """A payment for the subscription failed (-> past_due: runs paused, nothing deleted) or succeeded (-> active
    again from past_due, or from a trial that ended; an outstanding amount is settled). Idempotent by outcome: a
    second failure keeps the first failure's time, a second success changes nothing. Pass ``state`` to drop this
    process's cached snapshot at once (other replicas follow within the snapshot cache's few seconds)."""

    async def work(locked: _Locked) -> None:
        sub = locked.subscription
        if sub.status == SubscriptionStatus.CANCELED:
            return  # a late payment event for an ended subscription changes nothing here (the invoice side keeps it)
        if succeeded:
            sub.payment_failed_at = None
            sub.payment_overdue_at = None
        elif sub.payment_failed_at is None:
            sub.payment_failed_at = locked.now
        await _roll(session, locked)

    await _in_subscription_transaction(session, subscription_id, work, now=now, state=state)


async def record_payment_due(
    session: AsyncSession,
    subscription_id: uuid.UUID,
    *,
    due_at: datetime,
    now: datetime,
    grace: timedelta = DEFAULT_PAYMENT_GRACE,
    state: BillingState | None = None,
) -> None:
    """An amount is due (an invoice was issued): unpaid ``grace`` after ``due_at`` it is overdue (-> past_due). The
    earliest outstanding due date wins; a succeeded payment settles it (``record_payment_outcome``)."""

    async def work(locked: _Locked) -> None:
        sub = locked.subscription
        overdue = as_utc(due_at) + grace
        if sub.payment_overdue_at is None or overdue < as_utc(sub.payment_overdue_at):
            sub.payment_overdue_at = overdue
        await _roll(session, locked)

    await _in_subscription_transaction(session, subscription_id, work, now=now, state=state)


async def record_payments_due(
    session: AsyncSession,
    dues: Sequence[tuple[uuid.UUID, datetime]],
    *,
    now: datetime,
    grace: timedelta = DEFAULT_PAYMENT_GRACE,
) -> None:
    """Many amounts due at once (an issuing batch's invoices): ``record_payment_due`` for each, set-based where the
    overdue instant is still ahead. Then nothing can change status now (the rule moves at that instant, when the
    renewal job finds the row by ``payment_overdue_at``), so one statement per instant sets the earliest one, with
    the rows' invalidations in the same transaction. An amount already overdue goes through the lifecycle's own
    transaction, which moves the status at once."""
    ahead: dict[datetime, list[uuid.UUID]] = {}
    late: list[tuple[uuid.UUID, datetime]] = []
    for subscription_id, due_at in dues:
        overdue = as_utc(due_at) + grace
        if overdue > now:
            ahead.setdefault(overdue, []).append(subscription_id)
        else:
            late.append((subscription_id, due_at))
    if ahead:
        await session.rollback()
        try:
            if session.get_bind().dialect.name == "sqlite":
                await session.execute(text("BEGIN IMMEDIATE"))
            for overdue, ids in ahead.items():
                await session.execute(
                    update(Subscription)
                    .where(
                        Subscription.id.in_(ids),
                        or_(Subscription.payment_overdue_at.is_(None), Subscription.payment_overdue_at > overdue),
                    )
                    .values(payment_overdue_at=overdue)
                    .execution_options(synchronize_session=False)
                )
            every_id = [subscription_id for ids in ahead.values() for subscription_id in ids]
            accounts = await session.execute(
                select(BillingAccount.platform_id, BillingAccount.external_id)
                .join(Subscription, Subscription.account_id == BillingAccount.id)
                .where(Subscription.id.in_(every_id))
            )
            await publish(session, Topic.BILLING_ACCOUNT, [f"{platform}:{external}" for platform, external in accounts])
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
    for subscription_id, due_at in late:
        await record_payment_due(session, subscription_id, due_at=due_at, now=now, grace=grace)


# -- staff verbs ----------------------------------------------------------------------------------------------------
async def _staff_verb(
    session: AsyncSession,
    platform_id: uuid.UUID,
    subscription_id: uuid.UUID,
    work: Callable[[_Locked], Awaitable[None]],
    *,
    clock: Clock,
    state: BillingState | None,
) -> SubscriptionState:
    """A staff verb: ``work`` under the subscription's lock at the account's clock, then the subscription as it is."""
    await _in_subscription_transaction(session, subscription_id, work, platform_id=platform_id, real=clock, state=state)
    return await get_subscription(session, platform_id=platform_id, subscription_id=subscription_id, clock=clock)


async def _audit(session: AsyncSession, actor: Actor, locked: _Locked, action: str, **detail: Any) -> None:
    await record_audit(
        session,
        actor=actor,
        action=f"billing.subscription_{action}",
        target_type="billing_account",
        target_id=locked.account.id,
        detail={"subscription_id": str(locked.subscription.id), **detail},
        clock=lambda: locked.now,
    )


async def _plan_ref(session: AsyncSession, ref: str) -> Plan:
    try:
        plan = await session.get(Plan, uuid.UUID(ref))
    except ValueError:
        plan = await session.scalar(select(Plan).where(Plan.code == ref))
    if plan is None:
        raise PlanNotFound(f"no plan with id or code {ref!r}", field="plan")
    return plan


def _monthly_price(terms: BillingTerms) -> Decimal:
    return terms.price / 12 if terms.interval == "year" else terms.price


def _refuse_if_canceled(locked: _Locked) -> None:
    if locked.subscription.status == SubscriptionStatus.CANCELED:
        raise SubscriptionCanceled("the subscription is canceled; reactivate it first", field="subscription_id")


async def change_plan(
    session: AsyncSession,
    *,
    actor: Actor,
    platform_id: uuid.UUID,
    subscription_id: uuid.UUID,
    plan: str,
    clock: Clock = utcnow,
    state: BillingState | None = None,
) -> SubscriptionState:
    """An upgrade (a plan at least as expensive per month) takes effect at once, prorated (proration.py), and its
    limits apply at once; a downgrade is scheduled for the period end, where the renewal job applies it. Changing to
    the current plan withdraws a scheduled downgrade; asking again for what is already so changes nothing."""
    await _plan_ref(session, plan)  # an unknown plan is a 404 before any lock is taken

    async def work(locked: _Locked) -> None:
        _refuse_if_canceled(locked)
        target = await _plan_ref(session, plan)  # again: the transaction began with a rollback, expiring objects
        sub, now = locked.subscription, locked.now
        old_terms, new_terms = locked.terms, billing_terms(target.billing)
        if new_terms.interval != old_terms.interval or new_terms.currency != old_terms.currency:
            raise ValidationFailed(
                "a plan change keeps the billing interval and currency; start a new subscription instead",
                field="plan",
                code="plan_change_incompatible",
            )
        scheduled = await _scheduled_change(session, sub.id)
        if target.id == sub.plan_id or target.id == sub.pending_plan_id:
            if target.id == sub.plan_id and scheduled is not None:  # keep the current plan: withdraw the downgrade
                scheduled.state = PlanChangeState.WITHDRAWN.value
                sub.pending_plan_id = None
                await _audit(session, actor, locked, "downgrade_withdrawn", plan=target.code)
            return
        if scheduled is not None:
            scheduled.state = PlanChangeState.WITHDRAWN.value
            sub.pending_plan_id = None
        period = Period(as_utc(sub.current_period_start or now), as_utc(sub.current_period_end or now))
        upgrade = _monthly_price(new_terms) >= _monthly_price(old_terms)
        change = SubscriptionPlanChange(
            id=uuid.uuid4(),
            subscription_id=sub.id,
            from_plan_id=sub.plan_id,
            to_plan_id=target.id,
            requested_at=now,
            period_start=period.start,
            period_end=period.end,
            currency=new_terms.currency,
            actor=actor.name,
            credit=Decimal(0),
            charge=Decimal(0),
            days_left=0,
            period_days=0,
        )
        if upgrade:
            proration = prorate_upgrade(old_price=old_terms.price, new_price=new_terms.price, period=period, now=now)
            change.kind, change.state, change.effective_at = (
                PlanChangeKind.UPGRADE.value,
                PlanChangeState.APPLIED.value,
                now,
            )
            change.days_left, change.period_days = proration.days_left, proration.period_days
            change.credit, change.charge = proration.credit, proration.charge
            old_code = locked.plan.code
            sub.plan_id, locked.plan = target.id, target
            sub.updated_at = now
            session.add(change)
            _emit(
                session,
                locked,
                EventType.SUBSCRIPTION_PLAN_CHANGED,
                now,
                kind=PlanChangeKind.UPGRADE.value,
                from_plan=old_code,
                to_plan=target.code,
                effective_at=now.isoformat(),
                proration={
                    "days_left": proration.days_left,
                    "period_days": proration.period_days,
                    "credit": str(proration.credit),
                    "charge": str(proration.charge),
                    "net": str(proration.net),
                    "currency": new_terms.currency,
                },
            )
            await _audit(session, actor, locked, "upgraded", from_plan=old_code, to_plan=target.code)
        else:
            change.kind, change.state = PlanChangeKind.DOWNGRADE.value, PlanChangeState.SCHEDULED.value
            change.effective_at = period.end
            sub.pending_plan_id = target.id
            sub.updated_at = now
            session.add(change)
            _emit(
                session,
                locked,
                EventType.SUBSCRIPTION_DOWNGRADE_SCHEDULED,
                now,
                to_plan=target.code,
                effective_at=period.end.isoformat(),
            )
            await _audit(session, actor, locked, "downgrade_scheduled", to_plan=target.code)

    return await _staff_verb(session, platform_id, subscription_id, work, clock=clock, state=state)


async def cancel(
    session: AsyncSession,
    *,
    actor: Actor,
    platform_id: uuid.UUID,
    subscription_id: uuid.UUID,
    at_period_end: bool,
    clock: Clock = utcnow,
    state: BillingState | None = None,
) -> SubscriptionState:
    """Cancel at the period end (``subscription.cancel_scheduled`` now, ``.canceled`` when the renewal job reaches
    it; reactivate undoes it until then) or at once (``.canceled`` now). A scheduled downgrade is withdrawn."""

    async def work(locked: _Locked) -> None:
        sub, now = locked.subscription, locked.now
        if sub.status == SubscriptionStatus.CANCELED:
            return
        when = as_utc(sub.current_period_end) if at_period_end and sub.current_period_end is not None else now
        if sub.cancel_at is not None and as_utc(sub.cancel_at) <= when:
            return  # already ending no later than asked
        sub.cancel_at = when
        sub.updated_at = now
        scheduled = await _scheduled_change(session, sub.id)
        if scheduled is not None:
            scheduled.state = PlanChangeState.WITHDRAWN.value
            sub.pending_plan_id = None
        if when > now:
            _emit(session, locked, EventType.SUBSCRIPTION_CANCEL_SCHEDULED, now, cancel_at=when.isoformat())
        await _audit(session, actor, locked, "cancel", cancel_at=when.isoformat())
        settle(session, locked)

    return await _staff_verb(session, platform_id, subscription_id, work, clock=clock, state=state)


async def pause(
    session: AsyncSession,
    *,
    actor: Actor,
    platform_id: uuid.UUID,
    subscription_id: uuid.UUID,
    clock: Clock = utcnow,
    state: BillingState | None = None,
) -> SubscriptionState:
    """Pause: consume and reserve are refused (``subscription_paused``) until resumed; nothing is taken away."""

    async def work(locked: _Locked) -> None:
        _refuse_if_canceled(locked)
        if locked.subscription.paused_at is None:
            locked.subscription.paused_at = locked.now
            await _audit(session, actor, locked, "paused")
            settle(session, locked)

    return await _staff_verb(session, platform_id, subscription_id, work, clock=clock, state=state)


async def resume(
    session: AsyncSession,
    *,
    actor: Actor,
    platform_id: uuid.UUID,
    subscription_id: uuid.UUID,
    clock: Clock = utcnow,
    state: BillingState | None = None,
) -> SubscriptionState:
    """Undo a pause (to active, trialing, or past due if a payment is still outstanding)."""

    async def work(locked: _Locked) -> None:
        _refuse_if_canceled(locked)
        if locked.subscription.paused_at is not None:
            locked.subscription.paused_at = None
            await _audit(session, actor, locked, "resumed")
            settle(session, locked)

    return await _staff_verb(session, platform_id, subscription_id, work, clock=clock, state=state)


async def reactivate(
    session: AsyncSession,
    *,
    actor: Actor,
    platform_id: uuid.UUID,
    subscription_id: uuid.UUID,
    clock: Clock = utcnow,
    state: BillingState | None = None,
) -> SubscriptionState:
    """Undo a cancellation: one still scheduled is withdrawn (the term goes on); a canceled subscription starts a
    new term now (re-anchored: its monthly counters start afresh), on the plan it had. ``subscription.reactivated``."""

    async def work(locked: _Locked) -> None:
        sub, now = locked.subscription, locked.now
        if sub.cancel_at is None:
            return
        if sub.status == SubscriptionStatus.CANCELED:
            sub.anchor_at = now
            term = term_containing(now, now, locked.terms)
            sub.current_period_start, sub.current_period_end = term.start, term.end
            sub.trial_ends_at = (
                None if sub.trial_ends_at is None or as_utc(sub.trial_ends_at) <= now else sub.trial_ends_at
            )
            sub.canceled_at = None
            sub.cancel_at = None
            sub.updated_at = now
            settle(session, locked)  # canceled -> active: emits subscription.reactivated
        else:
            sub.cancel_at = None
            sub.updated_at = now
            _emit(session, locked, EventType.SUBSCRIPTION_REACTIVATED, now, previous_status=sub.status)
        await _audit(session, actor, locked, "reactivated")

    return await _staff_verb(session, platform_id, subscription_id, work, clock=clock, state=state)


# -- reads ----------------------------------------------------------------------------------------------------------
async def _state_of(session: AsyncSession, sub: Subscription, plan: Plan, now: datetime) -> SubscriptionState:
    pending = await session.get(Plan, sub.pending_plan_id) if sub.pending_plan_id is not None else None
    return SubscriptionState(
        view=SubscriptionView(sub, plan.code, billing_terms(plan.billing)),
        decision=decide(sub, now),
        pending_plan=pending.code if pending else None,
        now=now,
    )


async def get_subscription(
    session: AsyncSession, *, platform_id: uuid.UUID, subscription_id: uuid.UUID, clock: Clock = utcnow
) -> SubscriptionState:
    row = (
        await session.execute(
            select(Subscription, Plan)
            .join(Plan, Plan.id == Subscription.plan_id)
            .join(BillingAccount, BillingAccount.id == Subscription.account_id)
            .where(Subscription.id == subscription_id, BillingAccount.platform_id == platform_id)
        )
    ).first()
    if row is None:
        raise SubscriptionNotFound(f"platform {platform_id} has no subscription {subscription_id}", field="id")
    sub, plan = row
    now = (await account_clock(session, sub.account_id, clock))()
    return await _state_of(session, sub, plan, now)


async def subscription_states(
    session: AsyncSession, *, account_id: uuid.UUID, clock: Clock = utcnow
) -> list[SubscriptionState]:
    """The account's subscriptions as the APIs show them (status with trial days remaining, pending plan)."""
    now = (await account_clock(session, account_id, clock))()
    rows = await session.execute(
        select(Subscription, Plan)
        .join(Plan, Plan.id == Subscription.plan_id)
        .where(Subscription.account_id == account_id)
        .order_by(Subscription.anchor_at, Subscription.id)
    )
    return [await _state_of(session, sub, plan, now) for sub, plan in rows.all()]


async def plan_changes(session: AsyncSession, subscription_id: uuid.UUID) -> list[SubscriptionPlanChange]:
    """The subscription's plan changes, oldest first: what the invoices side reads for proration lines."""
    rows = await session.scalars(
        select(SubscriptionPlanChange)
        .where(SubscriptionPlanChange.subscription_id == subscription_id)
        .order_by(SubscriptionPlanChange.requested_at, SubscriptionPlanChange.id)
    )
    return list(rows.all())
