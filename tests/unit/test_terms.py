"""Effective terms: defaults, then plan, then license — computed in one place."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from license_server.licenses.terms import LicenseTerms, effective_terms, merge_overrides, terms_overrides


def test_defaults_apply_when_nothing_is_set() -> None:
    terms = effective_terms(None, {})
    assert terms == LicenseTerms()
    assert (terms.notice_days, terms.heartbeat_window_days, terms.max_activations) == (30, 7, 1)


def test_license_overrides_plan_which_overrides_defaults() -> None:
    plan = {"max_activations": 3, "workspaces": {"enabled": True, "limit": 10}, "notice_days": 60}
    license = {"workspaces": {"limit": 20}}
    terms = effective_terms(plan, license)
    assert terms.max_activations == 3
    assert terms.notice_days == 60
    assert (terms.workspaces.enabled, terms.workspaces.limit) == (True, 20)


def test_nested_overrides_merge_key_by_key() -> None:
    merged = merge_overrides(
        {"sso": {"enforced_for_signin": True, "signin_protocol": "saml"}},
        {"sso": {"signin_protocol": "oidc"}},
    )
    assert merged == {"sso": {"enforced_for_signin": True, "signin_protocol": "oidc"}}


def test_entitlements_merge_per_name() -> None:
    terms = effective_terms(
        {"entitlements": {"audit_log": True, "max_apps": 10}},
        {"entitlements": {"max_apps": 50, "tier": "gold"}},
    )
    assert terms.entitlements == {"audit_log": True, "max_apps": 50, "tier": "gold"}


def test_overrides_store_only_what_was_set() -> None:
    given = LicenseTerms.model_validate({"branding": {"application_title": "Acme AI"}})
    assert terms_overrides(given) == {"branding": {"application_title": "Acme AI"}}


def test_sso_enforcement_requires_a_protocol() -> None:
    with pytest.raises(ValidationError, match="signin_protocol"):
        LicenseTerms.model_validate({"sso": {"enforced_for_signin": True}})


def test_a_license_cannot_blank_the_protocol_its_plan_enforces() -> None:
    plan = {"sso": {"enforced_for_web": True, "web_protocol": "oidc"}}
    with pytest.raises(ValidationError, match="web_protocol"):
        effective_terms(plan, {"sso": {"web_protocol": ""}})


@pytest.mark.parametrize(
    "bad",
    [
        {"max_activations": -1},
        {"workspaces": {"limit": 10_000_001}},
        {"entitlements": {"Bad Name": True}},
        {"entitlements": {"x": 1.5}},
        {"entitlements": {"x": None}},
        {"sso": {"signin_protocol": "kerberos"}},
        {"plugin_installation": {"scope": "everything"}},
        {"unknown_term": 1},
        {"workspaces": {"enabled": "yes"}},
    ],
)
def test_invalid_terms_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        LicenseTerms.model_validate(bad)


def test_entitlements_keep_their_types() -> None:
    terms = LicenseTerms.model_validate({"entitlements": {"flag": True, "count": 3, "name": "x"}})
    assert [type(v) for v in terms.entitlements.values()] == [bool, int, str]
