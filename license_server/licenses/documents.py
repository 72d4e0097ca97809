"""The claims of a signed license document (schema version 1; see docs/license-document.md)."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from license_server.licenses.models import Customer, License, Plan
from license_server.licenses.terms import LicenseTerms
from license_server.lifecycle.status import StatusResult

SCHEMA_VERSION = 1


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def build_license_claims(
    *,
    license: License,
    customer: Customer,
    plan: Plan | None,
    terms: LicenseTerms,
    status: StatusResult,
    issuer: str,
    now: datetime,
    ttl: timedelta,
) -> dict[str, Any]:
    issued_at = int(now.timestamp())
    limits = {
        name: getattr(terms, name).model_dump(mode="json")
        for name in ("workspaces", "members_per_workspace", "licensed_seats")
    }
    return {
        "ver": SCHEMA_VERSION,
        "iss": issuer,
        "sub": str(license.id),
        "jti": secrets.token_hex(16),
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + int(ttl.total_seconds()),
        "license_id": str(license.id),
        "customer": {"id": str(customer.id), "name": customer.name, "external_id": customer.external_id},
        "plan": {"id": str(plan.id), "code": plan.code, "name": plan.name} if plan else None,
        "status": status.status.value,
        "status_reason": status.reason.value,
        "starts_at": _iso(license.starts_at),
        "expires_at": _iso(license.expires_at),
        "grace_days": terms.grace_days,
        "grace_ends_at": _iso(license.expires_at + terms.grace),
        "enforcement": terms.enforcement.value,
        "notice_days": terms.notice_days,
        "heartbeat_window_days": terms.heartbeat_window_days,
        "max_activations": terms.max_activations,
        "limits": limits,
        "sso": terms.sso.model_dump(mode="json"),
        "login": terms.login.model_dump(mode="json"),
        "webapp_auth": terms.webapp_auth.model_dump(mode="json"),
        "branding": terms.branding.model_dump(mode="json"),
        "plugin_installation": terms.plugin_installation.model_dump(mode="json"),
        "workspace_policy": terms.workspace_policy.model_dump(mode="json"),
        "entitlements": dict(terms.entitlements),
    }
