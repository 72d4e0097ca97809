"""What the portal's pages show, as pure functions of what the services return (no I/O, no rules of billing).

The limits report already holds every decision (the effective limit of each key comes from ``billing.limits``);
these functions only say how a report entry, a subscription or a plan's terms reads on a page (seeds 002 and 004).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from license_server.billing.accounts.models import SubscriptionStatus
from license_server.billing.accounts.snapshots import AccountSnapshot, SubscriptionView
from license_server.billing.plans.terms import BillingTerms


class LimitState(StrEnum):
    """How one limit row reads (seed 004): a bar with used / limit, or one of the two states in place of the bar."""

    BAR = "bar"
    UNLIMITED = "unlimited"  # no cap applies
    NOT_AVAILABLE = "not_available"  # the limit is 0: upgrade to use the feature at all


@dataclass(frozen=True)
class LimitRow:
    key: str
    label: str
    used: int
    limit: int | None
    held: int
    state: LimitState
    percent: int  # of the bar, 0-100 (whole percent, rounded down; 100 when at or over the cap)

    @property
    def at_cap(self) -> bool:
        return self.limit is not None and self.limit > 0 and self.used + self.held >= self.limit


@dataclass(frozen=True)
class UsageSections:
    total: list[LimitRow]
    monthly: list[LimitRow]
    resets_at: datetime  # the end of the current period: "Resets <date>"
    plan: str | None


def limit_label(key: str) -> str:
    """``vector_space_mb`` -> "Vector space mb", ``app.max_total_count`` -> "App max total count"."""
    words = key.replace("_", " ").replace(".", " ").replace(":", " ").replace("-", " ").split()
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def limit_row(entry: dict[str, Any]) -> LimitRow:
    """One entry of the limits report as a row. An entry without ``limit`` is unlimited; ``limit`` 0 is not
    available on the plan; anything else is a bar of (used + held) / limit."""
    used, held = int(entry["used"]), int(entry.get("held", 0))
    limit = entry.get("limit")
    if limit is None:
        state, percent = LimitState.UNLIMITED, 0
    elif limit == 0:
        state, percent = LimitState.NOT_AVAILABLE, 0
    else:
        state, percent = LimitState.BAR, min(100, (used + held) * 100 // int(limit))
    return LimitRow(
        key=entry["key"],
        label=limit_label(entry["key"]),
        used=used,
        limit=None if limit is None else int(limit),
        held=held,
        state=state,
        percent=percent,
    )


def usage_sections(report: dict[str, Any]) -> UsageSections:
    """Seed 004's two sections: total resource limits, and monthly usage limits with their reset date."""
    rows = [limit_row(entry) for entry in report["limits"]]
    return UsageSections(
        total=[r for r, e in zip(rows, report["limits"], strict=True) if e["group"] == "total"],
        monthly=[r for r, e in zip(rows, report["limits"], strict=True) if e["group"] == "monthly"],
        resets_at=datetime.fromisoformat(report["period_end"]),
        plan=report.get("plan"),
    )


class AccountStanding(StrEnum):
    """The status on the Overview tab (seed 002): Active, Trial or Past Due; and the states before and after."""

    ACTIVE = "Active"
    TRIAL = "Trial"
    PAST_DUE = "Past Due"
    PAUSED = "Paused"
    INACTIVE = "Inactive"  # subscribed once; nothing active now
    UNSET = "No plan yet"
    DISABLED = "Billing disabled"


@dataclass(frozen=True)
class Overview:
    standing: AccountStanding
    plan: SubscriptionView | None  # the subscription the page is about
    next_billing_at: datetime | None
    trial_ends_at: datetime | None
    trial_days_left: int | None


def trial_days_left(trial_ends_at: datetime, now: datetime) -> int:
    """Whole days remaining, counting a started day: 1 hour left reads "1 day", the end itself "0 days"."""
    remaining = trial_ends_at - now
    if remaining <= timedelta(0):
        return 0
    return remaining.days + (1 if remaining % timedelta(days=1) else 0)


def overview(snapshot: AccountSnapshot, now: datetime, next_billing_at: datetime | None) -> Overview:
    """A past-due subscription wins the page (its banner asks for payment); else the active one (the snapshot's
    primary); else the newest subscription, for the state it ended in."""
    if not snapshot.platform.billing_enabled:
        return Overview(AccountStanding.DISABLED, None, None, None, None)
    past_due = [v for v in snapshot.subscriptions if v.subscription.status == SubscriptionStatus.PAST_DUE]
    if past_due:
        return Overview(AccountStanding.PAST_DUE, past_due[0], next_billing_at, None, None)
    primary = snapshot.primary
    if primary is not None:
        sub = primary.subscription
        if sub.status == SubscriptionStatus.TRIALING and sub.trial_ends_at is not None:
            days = trial_days_left(sub.trial_ends_at, now)
            return Overview(AccountStanding.TRIAL, primary, next_billing_at, sub.trial_ends_at, days)
        return Overview(AccountStanding.ACTIVE, primary, next_billing_at, None, None)
    if not snapshot.subscriptions:
        return Overview(AccountStanding.UNSET, None, None, None, None)
    latest = snapshot.subscriptions[-1]
    paused = latest.subscription.status == SubscriptionStatus.PAUSED
    return Overview(AccountStanding.PAUSED if paused else AccountStanding.INACTIVE, latest, None, None, None)


@dataclass(frozen=True)
class PlanColumn:
    code: str
    name: str
    terms: BillingTerms
    current: bool


@dataclass(frozen=True)
class PlanComparison:
    plans: list[PlanColumn]
    quota_keys: list[str]
    feature_keys: list[str]


def plan_comparison(plans: list[tuple[str, str, BillingTerms]], current_code: str | None) -> PlanComparison:
    """Plans side by side, cheapest first (seed 002: Free, Pro, Enterprise), over the union of their keys."""
    columns = sorted(
        (PlanColumn(code, name, terms, code == current_code) for code, name, terms in plans),
        key=lambda column: (column.terms.price, column.code),
    )
    quota_keys = sorted({key for column in columns for key in column.terms.quotas})
    feature_keys = sorted({key for column in columns for key in column.terms.features})
    return PlanComparison(columns, quota_keys, feature_keys)


def quota_cell(terms: BillingTerms, key: str) -> str:
    """A plan's quota as the Usage tab would read it; a key the plan does not define is unlimited (seed 004)."""
    quota = terms.quotas.get(key)
    if quota is None or quota.limit is None:
        return "Unlimited"
    if quota.limit == 0:
        return "Not available on plan"
    return f"{quota.limit:,}" + (" / month" if quota.kind.value == "monthly" else "")


def price_text(price: Decimal, currency: str, interval: str) -> str:
    if price == 0:
        return "Free"
    return f"{format(price, 'f')} {currency} / {interval}"
