"""docs/license-document.schema.json describes exactly the claims build_license_claims emits.

The claims are built from real (unsaved) Customer, Plan and License objects, so the published schema cannot drift
from the code without a test failing.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_args

import pytest
from jsonschema import Draft202012Validator, FormatChecker  # type: ignore[import-untyped]

from license_server.licenses.documents import SCHEMA_VERSION, build_license_claims
from license_server.licenses.models import Customer, License, Plan
from license_server.licenses.terms import Enforcement, LicenseTerms, PluginScope, SSOProtocol
from license_server.lifecycle.status import OBSERVER_REASONS, Reason, Status, compute_status

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "license-document.schema.json"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
TTL = timedelta(days=3)

# jsonschema checks "date-time" only when an optional package is installed; check RFC 3339 here so the format
# assertions never pass vacuously.
FORMAT_CHECKER = FormatChecker()
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


@FORMAT_CHECKER.checks("date-time", raises=ValueError)  # type: ignore[untyped-decorator]
def _is_rfc3339_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _RFC3339.fullmatch(value):
        return False
    datetime.fromisoformat(value.upper())  # raises ValueError for impossible dates such as February 30
    return True


def load_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return schema


SCHEMA = load_schema()
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=FORMAT_CHECKER)


def schema_errors(claims: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(claims)]


# -- building real claims without a database ---------------------------------------------------------------------
def make_customer(*, external_id: str | None = None) -> Customer:
    return Customer(id=uuid.uuid4(), name="Acme Corp", contact_email=None, external_id=external_id)


def make_plan(terms: dict[str, Any]) -> Plan:
    return Plan(id=uuid.uuid4(), code="enterprise", name="Enterprise", description="", terms=terms)


def make_license(
    customer: Customer, plan: Plan | None, terms: dict[str, Any] | None = None, **attributes: Any
) -> License:
    values: dict[str, Any] = {
        "starts_at": NOW - 30 * DAY,
        "expires_at": NOW + 365 * DAY,
        "suspended_at": None,
        "revoked_at": None,
        "first_activated_at": None,
        "last_check_in_at": None,
        **attributes,
    }
    return License(
        id=uuid.uuid4(),
        customer_id=customer.id,
        plan_id=plan.id if plan else None,
        key_hash="0" * 64,
        key_hint="ABCD",
        terms=terms or {},
        notes="",
        status="",
        status_reason="",
        **values,
    )


def claims_for(license: License, customer: Customer, plan: Plan | None) -> dict[str, Any]:
    """What the document route signs: effective terms and status computed now, as the service does."""
    terms = license.effective_terms(plan)
    status = compute_status(license.facts(terms), NOW)
    return build_license_claims(
        license=license,
        customer=customer,
        plan=plan,
        terms=terms,
        status=status,
        issuer="license-server",
        now=NOW,
        ttl=TTL,
    )


def default_claims() -> dict[str, Any]:
    """(a) No plan, default terms, never activated."""
    customer = make_customer()
    return claims_for(make_license(customer, None), customer, None)


RICH_PLAN_TERMS: dict[str, Any] = {
    "max_activations": 5,
    "notice_days": 60,
    "heartbeat_window_days": 14,
    "workspaces": {"enabled": True, "limit": 10},
    "members_per_workspace": {"enabled": True, "limit": 250},
    "sso": {"enforced_for_signin": True, "signin_protocol": "saml", "enforced_for_web": True, "web_protocol": "oidc"},
    "login": {"email_code": True, "email_password": False},
    "webapp_auth": {"allow_sso": True},
    "plugin_installation": {"scope": "official_and_specific_partners", "restrict_to_marketplace_only": True},
    "workspace_policy": {"allow_owner_transfer": False},
    "entitlements": {"audit_log": True, "api.rate-limit": 1000},
}
RICH_LICENSE_TERMS: dict[str, Any] = {
    "grace_days": 14,
    "enforcement": "maintain",
    "licensed_seats": {"enabled": True, "limit": 5000},
    "branding": {
        "application_title": "Acme Workspace",
        "login_page_logo": "https://acme.example/logo.svg",
        "workspace_logo": "data:image/png;base64,iVBORw0KGgo=",
        "favicon": "",
    },
    "entitlements": {"support_tier": "gold", "max_apps": 0},
}


def rich_claims() -> dict[str, Any]:
    """(b) A plan and rich terms, activated, past expiry but inside its grace period; times with microseconds."""
    customer = make_customer(external_id="crm-0042")
    plan = make_plan(RICH_PLAN_TERMS)
    license = make_license(
        customer,
        plan,
        RICH_LICENSE_TERMS,
        starts_at=datetime(2025, 6, 1, 8, 30, 15, 123456, tzinfo=UTC),
        expires_at=NOW - 2 * DAY,
        first_activated_at=NOW - 300 * DAY,
        last_check_in_at=NOW - timedelta(hours=3),
    )
    return claims_for(license, customer, plan)


# -- real documents validate ---------------------------------------------------------------------------------------
def test_license_without_plan_and_with_default_terms_matches_the_schema() -> None:
    claims = default_claims()
    assert claims["plan"] is None
    assert claims["customer"]["external_id"] is None
    assert claims["entitlements"] == {}
    assert (claims["status"], claims["status_reason"]) == ("inactive", "NOT_ACTIVATED")
    assert schema_errors(claims) == []


def test_license_with_plan_and_rich_terms_matches_the_schema() -> None:
    claims = rich_claims()
    assert claims["plan"]["code"] == "enterprise"
    assert claims["sso"]["enforced_for_signin"] is True
    assert claims["sso"]["signin_protocol"] == "saml"
    assert claims["limits"]["licensed_seats"] == {"enabled": True, "limit": 5000, "used": 0, "over_limit": False}
    assert claims["entitlements"] == {"audit_log": True, "api.rate-limit": 1000, "support_tier": "gold", "max_apps": 0}
    assert {type(v) for v in claims["entitlements"].values()} == {bool, int, str}
    assert claims["starts_at"] == "2025-06-01T08:30:15.123456Z"
    assert (claims["status"], claims["status_reason"]) == ("expiring", "IN_GRACE_PERIOD")
    assert schema_errors(claims) == []


def test_document_lifetime_claims_are_numeric_dates_apart_by_the_ttl() -> None:
    claims = default_claims()
    assert claims["iat"] == claims["nbf"] == int(NOW.timestamp())
    assert claims["exp"] - claims["iat"] == int(TTL.total_seconds())
    assert claims["ver"] == SCHEMA_VERSION == SCHEMA["properties"]["ver"]["const"]


# Facts that reach each rung of the precedence ladder (see docs/license-document.md).
RUNGS: dict[Reason, dict[str, Any]] = {
    Reason.REVOKED: {"revoked_at": NOW - DAY, "first_activated_at": NOW - 10 * DAY},
    Reason.SUSPENDED: {"suspended_at": NOW - DAY, "first_activated_at": NOW - 10 * DAY},
    Reason.NOT_STARTED: {"starts_at": NOW + DAY},
    Reason.EXPIRED: {"expires_at": NOW - DAY, "first_activated_at": NOW - 10 * DAY},
    Reason.NOT_ACTIVATED: {},
    Reason.HEARTBEAT_MISSED: {"first_activated_at": NOW - 30 * DAY, "last_check_in_at": NOW - 8 * DAY},
    Reason.IN_GRACE_PERIOD: {"expires_at": NOW - DAY, "first_activated_at": NOW - 2 * DAY},
    Reason.EXPIRES_SOON: {
        "expires_at": NOW + 10 * DAY,
        "first_activated_at": NOW - 10 * DAY,
        "last_check_in_at": NOW - DAY,
    },
    Reason.ACTIVE: {"first_activated_at": NOW - 10 * DAY, "last_check_in_at": NOW - DAY},
}


def test_every_rung_of_the_ladder_is_exercised() -> None:
    assert set(RUNGS) == set(Reason) - OBSERVER_REASONS  # those are tested with the offline observers


@pytest.mark.parametrize("reason", list(RUNGS), ids=str)
def test_documents_for_every_status_reason_match_the_schema(reason: Reason) -> None:
    customer = make_customer()
    terms = {"grace_days": 7} if reason is Reason.IN_GRACE_PERIOD else {}
    claims = claims_for(make_license(customer, None, terms, **RUNGS[reason]), customer, None)
    assert claims["status_reason"] == reason.value
    assert schema_errors(claims) == []


# -- the schema cannot drift from the code -------------------------------------------------------------------------
def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("build", [default_claims, rich_claims], ids=["default", "rich"])
def test_schema_requires_exactly_the_claims_the_server_emits(build: Any) -> None:
    emitted = set(build())
    assert set(SCHEMA["required"]) == emitted
    assert set(SCHEMA["properties"]) == emitted


def test_nested_objects_require_every_member_the_server_emits() -> None:
    claims = rich_claims()
    properties = SCHEMA["properties"]
    for name in (
        "customer",
        "plan",
        "limits",
        "sso",
        "login",
        "webapp_auth",
        "branding",
        "plugin_installation",
        "workspace_policy",
    ):
        assert set(properties[name]["required"]) == set(claims[name]), name
        assert properties[name]["additionalProperties"] is False, name
    limit = SCHEMA["$defs"]["limit"]
    assert set(limit["required"]) == set(claims["limits"]["workspaces"])
    assert limit["additionalProperties"] is False


def test_schema_enums_match_the_code() -> None:
    properties = SCHEMA["properties"]
    assert set(properties["status"]["enum"]) == {s.value for s in Status} - {Status.NONE.value}
    assert set(properties["status_reason"]["enum"]) == {r.value for r in Reason} - {r.value for r in OBSERVER_REASONS}
    assert set(properties["enforcement"]["enum"]) == {e.value for e in Enforcement}
    assert set(properties["plugin_installation"]["properties"]["scope"]["enum"]) == {s.value for s in PluginScope}
    assert set(SCHEMA["$defs"]["ssoProtocol"]["enum"]) == set(get_args(SSOProtocol))


def test_schema_integer_bounds_match_the_terms_model() -> None:
    terms_schema = LicenseTerms.model_json_schema()
    for name in ("notice_days", "grace_days", "heartbeat_window_days", "max_activations"):
        expected = terms_schema["properties"][name]
        actual = SCHEMA["properties"][name]
        assert (actual["minimum"], actual["maximum"]) == (expected["minimum"], expected["maximum"]), name
    expected_limit = terms_schema["$defs"]["Limit"]["properties"]["limit"]
    actual_limit = SCHEMA["$defs"]["limit"]["properties"]["limit"]
    assert (actual_limit["minimum"], actual_limit["maximum"]) == (expected_limit["minimum"], expected_limit["maximum"])
    entitlements = terms_schema["properties"]["entitlements"]
    assert [SCHEMA["properties"]["entitlements"]["propertyNames"]["pattern"]] == list(entitlements["patternProperties"])
    assert SCHEMA["properties"]["entitlements"]["maxProperties"] == entitlements["maxProperties"]


# -- the schema rejects what the server never emits ------------------------------------------------------------
def mutated(claims: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(claims)
    target = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return changed


def test_extra_top_level_claim_is_rejected() -> None:
    assert schema_errors(mutated(default_claims(), ("unexpected",), True))


def test_extra_member_in_a_nested_object_is_rejected() -> None:
    assert schema_errors(mutated(rich_claims(), ("customer", "email"), "ops@acme.example"))
    assert schema_errors(mutated(rich_claims(), ("limits", "workspaces", "soft"), True))


@pytest.mark.parametrize("status", ["revoked", "none", "ACTIVE", ""])
def test_unknown_status_value_is_rejected(status: str) -> None:
    assert schema_errors(mutated(default_claims(), ("status",), status))


def test_status_that_contradicts_its_reason_is_rejected() -> None:
    assert schema_errors(mutated(default_claims(), ("status",), "active"))  # reason is NOT_ACTIVATED


def test_missing_claim_is_rejected() -> None:
    claims = default_claims()
    del claims["grace_ends_at"]
    assert schema_errors(claims)


@pytest.mark.parametrize("version", [2, 0, "1", True])
def test_other_schema_versions_are_rejected(version: object) -> None:
    assert schema_errors(mutated(default_claims(), ("ver",), version))


def test_timestamps_without_utc_offset_or_not_real_dates_are_rejected() -> None:
    assert schema_errors(mutated(default_claims(), ("expires_at",), "2027-01-31T00:00:00"))
    assert schema_errors(mutated(default_claims(), ("expires_at",), "2027-02-30T00:00:00Z"))
    assert schema_errors(mutated(default_claims(), ("expires_at",), "2027-01-31"))


def test_numeric_dates_must_be_integers() -> None:
    assert schema_errors(mutated(default_claims(), ("exp",), 1780000000.5))
    assert schema_errors(mutated(default_claims(), ("iat",), "1780000000"))


def test_enforced_sso_without_a_protocol_is_rejected() -> None:
    assert schema_errors(mutated(rich_claims(), ("sso", "signin_protocol"), ""))
    assert schema_errors(mutated(rich_claims(), ("sso", "web_protocol"), "kerberos"))


def test_out_of_range_terms_are_rejected() -> None:
    assert schema_errors(mutated(default_claims(), ("heartbeat_window_days",), 0))
    assert schema_errors(mutated(default_claims(), ("grace_days",), 3651))
    assert schema_errors(mutated(default_claims(), ("limits", "workspaces", "limit"), -1))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Audit_Log", True),  # names start with a lowercase letter and use [a-z0-9_.-]
        ("1st", True),
        ("quota", 1.5),  # values are boolean, integer or string
        ("nested", {"a": 1}),
        ("note", "x" * 1001),
    ],
)
def test_invalid_entitlements_are_rejected(name: str, value: object) -> None:
    assert schema_errors(mutated(default_claims(), ("entitlements", name), value))


def test_null_plan_and_null_external_id_are_allowed_but_other_nulls_are_not() -> None:
    claims = default_claims()
    assert schema_errors(claims) == []
    assert schema_errors(mutated(claims, ("customer", "name"), None))
    assert schema_errors(mutated(claims, ("expires_at",), None))
