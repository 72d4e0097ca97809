"""The claims of a signed license document (schema version 1; see docs/license-document.md).

``license_content`` is everything but the time claims; the poll path compares it to decide whether a cached
signed document still says the right thing, and re-signs only when it changed or nears its TTL.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from license_server.licenses.models import Customer, License, Plan
from license_server.licenses.terms import LicenseTerms
from license_server.licenses.usage import LIMIT_NAMES, NO_USAGE, UsageSummary, is_over
from license_server.lifecycle.status import StatusResult

SCHEMA_VERSION = 1


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def license_content(
    *,
    license: License,
    customer: Customer,
    plan: Plan | None,
    terms: LicenseTerms,
    status: StatusResult,
    issuer: str,
    usage: UsageSummary = NO_USAGE,
) -> dict[str, Any]:
    limits = {}
    for name in LIMIT_NAMES:
        limit = getattr(terms, name)
        used = usage.used(name)
        limits[name] = {
            "enabled": limit.enabled,
            "limit": limit.limit,
            "used": used,
            "over_limit": is_over(limit, used),
        }
    return {
        "ver": SCHEMA_VERSION,
        "iss": issuer,
        "sub": str(license.id),
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
        "over_limit": any(item["over_limit"] for item in limits.values()),
        "sso": terms.sso.model_dump(mode="json"),
        "login": terms.login.model_dump(mode="json"),
        "webapp_auth": terms.webapp_auth.model_dump(mode="json"),
        "branding": terms.branding.model_dump(mode="json"),
        "plugin_installation": terms.plugin_installation.model_dump(mode="json"),
        "workspace_policy": terms.workspace_policy.model_dump(mode="json"),
        "entitlements": dict(terms.entitlements),
    }


def with_time_claims(content: dict[str, Any], *, now: datetime, ttl: timedelta) -> dict[str, Any]:
    """Add iat/nbf/exp and a jti derived from everything else: the same content signed at the same second is the
    same document, byte for byte (Ed25519 is deterministic), e.g. from a server restored from a backup."""
    issued_at = int(now.timestamp())
    timed = {**content, "iat": issued_at, "nbf": issued_at, "exp": issued_at + int(ttl.total_seconds())}
    canonical = json.dumps(timed, sort_keys=True, separators=(",", ":"), default=str).encode()
    return {
        **content,
        "jti": hashlib.sha256(canonical).hexdigest()[:32],
        **{k: timed[k] for k in ("iat", "nbf", "exp")},
    }


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
    usage: UsageSummary = NO_USAGE,
) -> dict[str, Any]:
    content = license_content(
        license=license, customer=customer, plan=plan, terms=terms, status=status, issuer=issuer, usage=usage
    )
    return with_time_claims(content, now=now, ttl=ttl)
