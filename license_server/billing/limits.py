"""The one place the effective limit of a quota key is decided. Pure: facts in, a limit and where it came from out.

The order (seed 004), first rung that applies wins:

1. a per-account override set by vendor staff;
2. billing disabled for the platform (self-hosted style) -> unlimited;
3. the account's active subscriptions (trialing counts) -> the highest value among them; a key one of the plans
   does not define is unlimited on that plan, so it is unlimited. Past-due and paused subscriptions count here too
   (their plan's limits stand, nothing is taken away); their new usage is refused by the lifecycle instead
   (usage.service: subscription_past_due / subscription_paused);
4. no active subscription -> the platform's restrictive defaults (1 app, 1 knowledge base, 0 for everything else).

``limit`` None means unlimited; 0 means not available on the plan. Imports nothing beyond the standard library.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import cast


class QuotaKind(StrEnum):
    TOTAL = "total"  # how many of a thing exist at once (a gauge)
    MONTHLY = "monthly"  # how many times a thing happens per billing period (a counter)


class LimitSource(StrEnum):
    OVERRIDE = "override"
    BILLING_DISABLED = "billing_disabled"
    SUBSCRIPTION = "subscription"
    RESTRICTIVE_DEFAULT = "restrictive_default"


# Seed 004: "restrictive defaults apply: 1 App, 1 Knowledge Base, and 0 for everything else".
SEED_RESTRICTIVE_DEFAULTS: Mapping[str, int] = {"app.max_total_count": 1, "knowledge_base.max_total_count": 1}


@dataclass(frozen=True)
class Quota:
    kind: QuotaKind
    limit: int | None  # None: unlimited


@dataclass(frozen=True)
class LimitFacts:
    """What an account's limits depend on."""

    billing_enabled: bool = True
    overrides: Mapping[str, int | None] = field(default_factory=dict)  # key -> limit (None: unlimited)
    # One quota map per active (or trialing) subscription's plan; empty: no active subscription.
    active_plans: Sequence[Mapping[str, Quota]] = ()
    restrictive_defaults: Mapping[str, int] = field(default_factory=lambda: dict(SEED_RESTRICTIVE_DEFAULTS))


@dataclass(frozen=True)
class EffectiveLimit:
    limit: int | None  # None: unlimited
    source: LimitSource

    @property
    def unlimited(self) -> bool:
        return self.limit is None

    def allows(self, used: int) -> bool:
        """Whether ``used`` (including what a write would add) stays within the limit."""
        return self.limit is None or used <= self.limit


def effective_limit(facts: LimitFacts, key: str) -> EffectiveLimit:
    if key in facts.overrides:
        return EffectiveLimit(facts.overrides[key], LimitSource.OVERRIDE)
    if not facts.billing_enabled:
        return EffectiveLimit(None, LimitSource.BILLING_DISABLED)
    if facts.active_plans:
        values = [plan[key].limit if key in plan else None for plan in facts.active_plans]
        # (no generator expressions: reserve and consume ask this on every call)
        return EffectiveLimit(None if None in values else max(cast(list[int], values)), LimitSource.SUBSCRIPTION)
    return EffectiveLimit(facts.restrictive_defaults.get(key, 0), LimitSource.RESTRICTIVE_DEFAULT)


def quota_kind(facts: LimitFacts, key: str) -> QuotaKind | None:
    """The kind the account's plans give a key, if any plan defines it."""
    for plan in facts.active_plans:
        if key in plan:
            return plan[key].kind
    return None
