"""Pure translations from the billing core's facts to what Dify's billing client expects. No I/O, no clock.

The core decides every limit (``billing.limits.effective_limit``) and period (``billing.periods``); this module only
renames them and turns them into Dify's numbers and sentinels, which differ per field (the contract, §3):

- the resource checks of ``members``, ``apps`` and ``vector_space`` refuse when ``0 < limit <= size``, so for them 0
  means unlimited. Our "not available" (limit 0) therefore goes out as 1, the smallest limit Dify enforces: it refuses
  a new one as soon as one exists (Dify has no way to say "none at all");
- ``documents_upload_quota`` and ``annotation_quota_limit`` also feed checks with no exemption for 0, so for them 0
  is "none" and unlimited goes out as ``UNLIMITED_COUNT``;
- ``/quota/info`` and the reserve answers say unlimited with -1 (Dify's ``get_remaining`` convention);
- the knowledge rate limit is compared raw (``count > limit``), so unlimited goes out as ``UNLIMITED_COUNT``.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from license_server.billing.accounts.models import SubscriptionStatus
from license_server.billing.accounts.snapshots import SubscriptionView
from license_server.billing.limits import EffectiveLimit, LimitFacts, Quota, QuotaKind, effective_limit
from license_server.billing.periods import period_containing
from license_server.billing.plans.terms import BillingTerms
from license_server.config import DifyBillingSettings

SANDBOX, PROFESSIONAL, TEAM = "sandbox", "professional", "team"
TIERS = (SANDBOX, PROFESSIONAL, TEAM)  # lowest first: several active plans show as the highest
PAID_PLANS = frozenset({PROFESSIONAL, TEAM})  # what Dify's archiver and retention jobs count as paid
UNLIMITED = -1  # /quota/info, reserve / commit / release: Dify's "no limit"
UNLIMITED_COUNT = 2**31 - 1  # fields Dify compares raw, where 0 would mean "none"
NEVER_PAID = -1  # plan batch's expiration_date for a workspace that never had a paid subscription
# A past-due or paused subscription keeps naming the plan (its data is kept and Dify's retention must not treat it as
# sandbox); its limits are whatever the core gives a subscription in that status.
HELD_STATUSES = frozenset({SubscriptionStatus.PAST_DUE.value, SubscriptionStatus.PAUSED.value})
# Gauges whose resource check treats 0 as unlimited, and those whose checks treat 0 as "none".
ZERO_IS_UNLIMITED = ("members", "apps", "vector_space")
ZERO_IS_NONE = ("documents_upload_quota", "annotation_quota_limit")
DOCS_PROCESSING = frozenset({"standard", "priority", "top-priority"})
# Dify's legacy feature names (``/tenant-feature-usage/*``, bs:293) for its two quota keys.
LEGACY_FEATURE_KEYS = {"trigger": "trigger_event", "workflow": "api_rate_limit"}


@dataclass(frozen=True)
class DifyPlan:
    """The plan name Dify is told, and the subscription it comes from (None: no subscription that counts)."""

    name: str
    view: SubscriptionView | None


def names_by_code(config: DifyBillingSettings) -> dict[str, str]:
    """Our plan code -> Dify's plan name, from the configured mapping (a code named twice keeps the higher tier)."""
    names: dict[str, str] = {}
    for name in TIERS:
        for code in config.plans.get(name, []):  # type: ignore[call-overload]  # keys are DifyPlanName literals
            names[code] = name
    return names


def dify_plan(views: Sequence[SubscriptionView], now: datetime, names: Mapping[str, str], unmapped: str) -> DifyPlan:
    """Active (or trialing) subscriptions first, else past-due / paused ones; among them the highest tier, the
    earliest started on a tie. None of either: sandbox."""
    active = [view for view in views if view.subscription.is_active(now)]
    candidates = active or [view for view in views if view.subscription.status in HELD_STATUSES]
    if not candidates:
        return DifyPlan(SANDBOX, None)
    ranked = [(TIERS.index(names.get(view.plan_code, unmapped)), -index, view) for index, view in enumerate(candidates)]
    rank, _, view = max(ranked, key=lambda entry: (entry[0], entry[1]))
    return DifyPlan(TIERS[rank], view)


def unix_seconds(moment: datetime) -> int:
    return int(moment.timestamp())


def expiration_date(
    plan: DifyPlan, views: Sequence[SubscriptionView], now: datetime, names: Mapping[str, str], unmapped: str
) -> int:
    """Plan batch's ``expiration_date``: while a paid plan is shown, the end of its current period; otherwise the
    moment the last paid subscription ended (canceled, or a trial that ran out); -1 if there never was one."""
    if plan.name in PAID_PLANS and plan.view is not None:
        return unix_seconds(period_containing(now, plan.view.subscription.anchor_at).end)
    ended = []
    for view in views:
        if names.get(view.plan_code, unmapped) not in PAID_PLANS:
            continue
        sub = view.subscription
        if sub.canceled_at is not None:
            ended.append(sub.canceled_at)
        elif sub.trial_ends_at is not None and sub.status == SubscriptionStatus.TRIALING.value:
            ended.append(sub.trial_ends_at)
    return unix_seconds(max(ended)) if ended else NEVER_PAID


def gauge_limit(field: str, limit: int | None) -> int:
    """A gauge's effective limit in Dify's terms for ``field`` (see the module docstring)."""
    if field in ZERO_IS_UNLIMITED:
        if limit is None:
            return 0
        return max(limit, 1)
    if limit is None:
        return UNLIMITED_COUNT
    return limit


def quota_limit(limit: int | None) -> int:
    return UNLIMITED if limit is None else limit


def available(limit: int | None, used_and_held: int) -> int:
    """What a reserve / commit / release answers as ``available``: the limit minus what is used and held."""
    return UNLIMITED if limit is None else max(0, limit - used_and_held)


def rate_limit(facts: LimitFacts, active_terms: Sequence[BillingTerms], key: str) -> EffectiveLimit:
    """The effective value of a plan rate limit (``rate_limits[key].limit``), decided by the core's one rule: the
    plans' rate limits stand in for their quotas, everything else (overrides, billing off, restrictive defaults) is
    the account's own facts."""
    plans = tuple(
        {key: Quota(QuotaKind.TOTAL, terms.rate_limits[key].limit)} if key in terms.rate_limits else {}
        for terms in active_terms
    )
    return effective_limit(
        LimitFacts(
            billing_enabled=facts.billing_enabled,
            overrides=facts.overrides,
            active_plans=plans,
            restrictive_defaults=facts.restrictive_defaults,
        ),
        key,
    )


def knowledge_rate_limit(limit: EffectiveLimit) -> int:
    return UNLIMITED_COUNT if limit.limit is None else limit.limit


def feature_on(features: Mapping[str, Any], name: str) -> bool:
    """A plan switch: a JSON true, or the string "true" (catalogues written by hand); absent is off."""
    value = features.get(name)
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def docs_processing(features: Mapping[str, Any], name: str) -> str:
    value = features.get(name)
    return value if isinstance(value, str) and value in DOCS_PROCESSING else "standard"


@dataclass(frozen=True)
class Gauge:
    size: int
    limit: int | None


def subscription_info(
    *,
    enabled: bool,
    plan: DifyPlan,
    gauges: Mapping[str, Gauge],
    features: Mapping[str, Any],
    config: DifyBillingSettings,
    knowledge_limit: EffectiveLimit,
    period_end: datetime,
) -> dict[str, Any]:
    """``GET /subscription/info``: every key Dify's ``BillingInfo`` requires, with its JSON type (contract §3.1).
    ``knowledge_rate_limit.size`` is left out on purpose (null fails Dify's validation)."""
    names = config.features

    def gauge(field: str) -> dict[str, int]:
        entry = gauges[field]
        return {"size": entry.size, "limit": gauge_limit(field, entry.limit)}

    vector = gauges["vector_space"]
    return {
        "enabled": enabled,
        "subscription": {
            "plan": plan.name,
            "interval": plan.view.terms.interval if plan.view is not None else "",
            "education": False,
        },
        "members": gauge("members"),
        "apps": gauge("apps"),
        # Dify validates a float (MB); a gauge is a whole number, exact as a float far beyond any real size.
        "vector_space": {"size": float(vector.size), "limit": gauge_limit("vector_space", vector.limit)},
        "knowledge_rate_limit": {"limit": knowledge_rate_limit(knowledge_limit)},
        "documents_upload_quota": gauge("documents_upload_quota"),
        "annotation_quota_limit": gauge("annotation_quota_limit"),
        "docs_processing": docs_processing(features, names["docs_processing"]),
        "can_replace_logo": feature_on(features, names["can_replace_logo"]),
        "model_load_balancing_enabled": feature_on(features, names["model_load_balancing_enabled"]),
        "knowledge_pipeline_publish_enabled": feature_on(features, names["knowledge_pipeline_publish_enabled"]),
        "next_credit_reset_date": unix_seconds(period_end),
    }


@dataclass(frozen=True)
class Counter:
    used: int  # used and held: holds count against the limit while they stand
    limit: int | None


def quota_entry(counter: Counter, period_end: datetime) -> dict[str, int]:
    return {"usage": counter.used, "limit": quota_limit(counter.limit), "reset_date": unix_seconds(period_end)}


_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def fill_url(template: str, values: Mapping[str, str]) -> str:
    """A configured link with its ``{name}`` placeholders replaced by URL-encoded values; unknown names are left as
    written (a template is the operator's, a value is Dify's input, and only values are encoded)."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        return urllib.parse.quote(values[name], safe="") if name in values else match.group(0)

    return _PLACEHOLDER.sub(replace, template)
