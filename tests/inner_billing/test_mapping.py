"""The pure translations: Dify's sentinels per field, which plan Dify is told about, paid-until, links, settings."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from license_server.billing.accounts.models import Subscription
from license_server.billing.accounts.snapshots import SubscriptionView
from license_server.billing.limits import LimitFacts, LimitSource
from license_server.billing.plans.terms import BillingTerms
from license_server.config import DifyBillingSettings
from license_server.inner_billing import mapping

NOW = datetime(2026, 6, 15, tzinfo=UTC)
NAMES = mapping.names_by_code(DifyBillingSettings())


def view(code: str, status: str = "active", *, anchor: datetime | None = None, **kw: object) -> SubscriptionView:
    subscription = Subscription(
        id=uuid.uuid4(),
        account_id=uuid.uuid4(),
        plan_id=uuid.uuid4(),
        status=status,
        anchor_at=anchor or datetime(2026, 6, 1, tzinfo=UTC),
        trial_ends_at=kw.get("trial_ends_at"),
        canceled_at=kw.get("canceled_at"),
    )
    return SubscriptionView(subscription, code, BillingTerms())


@pytest.mark.parametrize(
    ("field", "limit", "sent"),
    [
        ("members", None, 0),  # 0 is unlimited in Dify's resource check
        ("members", 0, 1),  # "not on the plan": the smallest limit Dify enforces
        ("apps", 50, 50),
        ("vector_space", None, 0),
        ("documents_upload_quota", None, mapping.UNLIMITED_COUNT),  # 0 would be "none" in Dify's upload check
        ("documents_upload_quota", 0, 0),
        ("annotation_quota_limit", 10, 10),
    ],
)
def test_gauge_limits_use_each_fields_own_convention(field: str, limit: int | None, sent: int) -> None:
    assert mapping.gauge_limit(field, limit) == sent


def test_available_is_minus_1_when_unlimited_and_never_negative() -> None:
    assert mapping.available(None, 10) == mapping.UNLIMITED
    assert mapping.available(5, 7) == 0
    assert mapping.available(5, 2) == 3


def test_the_highest_tier_among_active_subscriptions_is_shown() -> None:
    plan = mapping.dify_plan([view("dify-sandbox"), view("dify-team"), view("dify-professional")], NOW, NAMES, "x")
    assert plan.name == "team"
    assert plan.view is not None
    assert plan.view.plan_code == "dify-team"


def test_past_due_and_paused_keep_their_plan_name_and_canceled_does_not() -> None:
    assert mapping.dify_plan([view("dify-team", "past_due")], NOW, NAMES, "professional").name == "team"
    assert mapping.dify_plan([view("dify-professional", "paused")], NOW, NAMES, "team").name == "professional"
    canceled = mapping.dify_plan([view("dify-team", "canceled")], NOW, NAMES, "professional")
    assert (canceled.name, canceled.view) == ("sandbox", None)
    # an active subscription wins over a held one, whatever their tiers
    assert mapping.dify_plan([view("dify-team", "past_due"), view("dify-sandbox")], NOW, NAMES, "x").name == "sandbox"


def test_an_unmapped_plan_shows_as_the_configured_name() -> None:
    assert mapping.dify_plan([view("enterprise-custom")], NOW, NAMES, "team").name == "team"


def test_a_trial_past_its_end_no_longer_counts() -> None:
    ended = view("dify-team", "trialing", trial_ends_at=NOW - timedelta(days=1))
    assert mapping.dify_plan([ended], NOW, NAMES, "professional").name == "sandbox"


def test_expiration_date_is_the_paid_periods_end_or_when_paid_ended_or_never() -> None:
    paid = view("dify-professional")
    plan = mapping.dify_plan([paid], NOW, NAMES, "professional")
    assert mapping.expiration_date(plan, [paid], NOW, NAMES, "professional") == int(
        datetime(2026, 7, 1, tzinfo=UTC).timestamp()
    )
    ended_at = datetime(2026, 5, 20, tzinfo=UTC)
    history = [view("dify-sandbox"), view("dify-team", "canceled", canceled_at=ended_at)]
    plan = mapping.dify_plan(history, NOW, NAMES, "professional")
    assert plan.name == "sandbox"
    assert mapping.expiration_date(plan, history, NOW, NAMES, "professional") == int(ended_at.timestamp())
    free = [view("dify-sandbox")]
    assert mapping.expiration_date(mapping.dify_plan(free, NOW, NAMES, "x"), free, NOW, NAMES, "x") == -1


def test_the_knowledge_rate_limit_follows_the_cores_rule() -> None:
    kb = BillingTerms.model_validate({"rate_limits": {"knowledge_requests": {"limit": 100, "window_seconds": 60}}})
    bare = BillingTerms()
    facts = LimitFacts()
    assert mapping.rate_limit(facts, [kb], "knowledge_requests").limit == 100
    # a plan that does not set it: unlimited, like any key a plan does not define
    assert mapping.rate_limit(facts, [kb, bare], "knowledge_requests").limit is None
    # no active plan: the restrictive default (0 for keys it does not name)
    assert mapping.rate_limit(facts, [], "knowledge_requests").limit == 0
    override = mapping.rate_limit(LimitFacts(overrides={"knowledge_requests": 7}), [kb], "knowledge_requests")
    assert (override.limit, override.source) == (7, LimitSource.OVERRIDE)
    assert mapping.knowledge_rate_limit(mapping.rate_limit(facts, [bare], "knowledge_requests")) == (
        mapping.UNLIMITED_COUNT
    )


def test_features_read_json_true_or_the_string_true() -> None:
    assert mapping.feature_on({"logo_change": True}, "logo_change") is True
    assert mapping.feature_on({"logo_change": "true"}, "logo_change") is True
    assert mapping.feature_on({"logo_change": "yes"}, "logo_change") is False
    assert mapping.feature_on({}, "logo_change") is False
    assert mapping.docs_processing({"p": "top-priority"}, "p") == "top-priority"
    assert mapping.docs_processing({"p": "fast"}, "p") == "standard"


def test_links_encode_values_and_leave_unknown_placeholders() -> None:
    url = mapping.fill_url(
        "https://x/{plan}?e={prefilled_email}&k={secret}", {"plan": "team", "prefilled_email": "a&b"}
    )
    assert url == "https://x/team?e=a%26b&k={secret}"


def test_naming_one_key_keeps_the_other_defaults_and_unknown_names_are_refused() -> None:
    config = DifyBillingSettings(keys={"apps": "app.max_total_count"})
    assert config.keys["apps"] == "app.max_total_count"
    assert config.keys["members"] == "members"
    with pytest.raises(ValidationError, match="not a Dify name"):
        DifyBillingSettings(keys={"appz": "x"})
    with pytest.raises(ValidationError):
        DifyBillingSettings.model_validate({"plans": {"enterprise": ["x"]}})


def test_a_code_listed_under_two_names_shows_as_the_higher() -> None:
    names = mapping.names_by_code(DifyBillingSettings(plans={"professional": ["p", "both"], "team": ["both"]}))
    assert names == {"p": "professional", "both": "team"}
