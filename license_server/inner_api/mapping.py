"""Pure mappings from license facts to the bodies the Dify client expects. No I/O, no clock, no database.

``info_body`` is a function of (effective terms, expiry, computed status, usage) only, so the vendor server (terms
from its database) and the edge (terms read back from a verified license document with ``terms_from_claims``) build
the same ``/info`` answer from the same facts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from license_server.licenses.terms import LicenseTerms, Limit, WorkspacePolicy
from license_server.licenses.usage import NO_USAGE, UsageSummary
from license_server.lifecycle.status import Status

# The entitlement that switches Dify's app deployment off (``EnableAppDeploy``); absent means allowed.
APP_DEPLOY_ENTITLEMENT = "app_deploy"


class AccessMode(StrEnum):
    PUBLIC = "public"  # anyone, signed in or not
    PRIVATE = "private"  # only the users on the app's allow-list (the default)
    PRIVATE_ALL = "private_all"  # every signed-in user of the deployment
    SSO_VERIFIED = "sso_verified"  # every user who passed the web-app SSO


DEFAULT_ACCESS_MODE = AccessMode.PRIVATE
# Modes Dify's client may set with POST /webapp/access-mode; sso_verified is set through the admin API.
CLIENT_SETTABLE_MODES = (AccessMode.PUBLIC, AccessMode.PRIVATE, AccessMode.PRIVATE_ALL)


def _limit(limit: Limit, used: int) -> dict[str, Any]:
    return {"enabled": limit.enabled, "limit": limit.limit, "used": used}


def _date(moment: datetime) -> str:
    return moment.astimezone(UTC).date().isoformat()


def info_body(*, terms: LicenseTerms, expires_at: datetime, status: Status, usage: UsageSummary) -> dict[str, Any]:
    """Every key of the contract's ``/info`` object (top level PascalCase, nested camelCase)."""
    app_deploy = terms.entitlements.get(APP_DEPLOY_ENTITLEMENT, True)
    return {
        "SSOEnforcedForSignin": terms.sso.enforced_for_signin,
        "SSOEnforcedForSigninProtocol": terms.sso.signin_protocol,
        "SSOEnforcedForWebProtocol": terms.sso.web_protocol,
        "EnableEmailCodeLogin": terms.login.email_code,
        "EnableEmailPasswordLogin": terms.login.email_password,
        "IsAllowRegister": terms.login.allow_register,
        "IsAllowCreateWorkspace": terms.login.allow_create_workspace,
        "Branding": {
            "applicationTitle": terms.branding.application_title,
            "loginPageLogo": terms.branding.login_page_logo,
            "workspaceLogo": terms.branding.workspace_logo,
            "favicon": terms.branding.favicon,
        },
        "WebAppAuth": {
            "allowSso": terms.webapp_auth.allow_sso,
            "allowEmailCodeLogin": terms.webapp_auth.allow_email_code,
            "allowEmailPasswordLogin": terms.webapp_auth.allow_email_password,
        },
        "License": {
            "status": Status(status).value,
            "expiredAt": _date(expires_at),
            "workspaces": _limit(terms.workspaces, usage.workspaces),
            "licensedSeats": _limit(terms.licensed_seats, usage.licensed_seats),
        },
        "PluginInstallationPermission": {
            "pluginInstallationScope": terms.plugin_installation.scope.value,
            "restrictToMarketplaceOnly": terms.plugin_installation.restrict_to_marketplace_only,
        },
        "EnableAppDeploy": app_deploy is not False,
    }


def info_body_without_license() -> dict[str, Any]:
    """What a server with no license at all answers (status ``none``): every default, nothing enforced."""
    body = info_body(
        terms=LicenseTerms(), expires_at=datetime(1970, 1, 1, tzinfo=UTC), status=Status.NONE, usage=NO_USAGE
    )
    body["License"]["expiredAt"] = ""
    return body


def terms_from_claims(claims: Mapping[str, Any]) -> LicenseTerms:
    """The effective terms a signed license document carries (docs/license-document.md), for the edge."""
    limits = claims.get("limits", {})
    return LicenseTerms.model_validate(
        {
            "notice_days": claims["notice_days"],
            "grace_days": claims["grace_days"],
            "enforcement": claims["enforcement"],
            "heartbeat_window_days": claims["heartbeat_window_days"],
            "max_activations": claims["max_activations"],
            **{
                name: {"enabled": limits[name]["enabled"], "limit": limits[name]["limit"]}
                for name in ("workspaces", "members_per_workspace", "licensed_seats")
                if name in limits
            },
            "sso": claims["sso"],
            "login": claims["login"],
            "webapp_auth": claims["webapp_auth"],
            "branding": claims["branding"],
            "plugin_installation": claims["plugin_installation"],
            "workspace_policy": claims["workspace_policy"],
            "entitlements": claims.get("entitlements", {}),
        }
    )


def workspace_member_counts(reports: Iterable[Iterable[Mapping[str, Any]]]) -> dict[str, int]:
    """Members per workspace id across usage reports (each a list of ``{"id", "members"}``): the largest count wins,
    since that is what the per-workspace limit constrains."""
    members: dict[str, int] = {}
    for workspaces in reports:
        for item in workspaces or ():
            key = str(item.get("id", ""))
            members[key] = max(members.get(key, 0), int(item.get("members", 0)))
    return members


def workspace_info_body(terms: LicenseTerms, members: int) -> dict[str, Any]:
    return {"WorkspaceMembers": _limit(terms.members_per_workspace, members)}


def permission_body(workspace_id: str, policy: WorkspacePolicy) -> dict[str, Any]:
    return {
        "permission": {
            "workspaceId": workspace_id,
            "allowMemberInvite": policy.allow_member_invite,
            "allowOwnerTransfer": policy.allow_owner_transfer,
        }
    }


def timestamp_body(moment: datetime) -> str:
    """An ISO-8601 timestamp with an explicit ``+00:00`` offset (Dify parses it with ``datetime.fromisoformat``)."""
    return moment.astimezone(UTC).isoformat()


def user_may_open(mode: AccessMode, *, allow_listed: bool) -> bool:
    """The web-app permission rule: public, private_all and sso_verified let every user in; private, the allow-list."""
    return allow_listed if mode is AccessMode.PRIVATE else True


def permissions_body(modes: Mapping[str, AccessMode], allow_listed: Iterable[str]) -> dict[str, bool]:
    listed = set(allow_listed)
    return {app_id: user_may_open(mode, allow_listed=app_id in listed) for app_id, mode in modes.items()}
