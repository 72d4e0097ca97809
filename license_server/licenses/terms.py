"""License terms: what a plan offers by default and a license may override.

Plans and licenses store only the values they set (a partial document); ``effective_terms`` merges defaults, plan
and license in that order. It is the only place effective terms are computed.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, model_validator

SSOProtocol = Literal["", "saml", "oidc", "oauth2"]
ShortText = Annotated[str, Field(max_length=200)]
AssetReference = Annotated[str, Field(max_length=4096, description="URL or data URI")]
EntitlementName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.-]{0,63}$")]
# Integers stay within I-JSON's exact range (RFC 7493), so every JSON client reads the value the document signs.
SafeInt = Annotated[StrictInt, Field(ge=-(2**53) + 1, le=2**53 - 1)]
EntitlementValue = StrictBool | SafeInt | Annotated[StrictStr, Field(max_length=1000)]
MAX_LIMIT = 10_000_000


class Enforcement(StrEnum):
    """What happens once the license is past expiry and grace."""

    RESTRICT = "restrict"  # expired means stop: no new activations, validation fails
    MAINTAIN = "maintain"  # expired is reported, but existing deployments keep working


class PluginScope(StrEnum):
    NONE = "none"
    OFFICIAL_ONLY = "official_only"
    OFFICIAL_AND_SPECIFIC_PARTNERS = "official_and_specific_partners"
    ALL = "all"


class _Terms(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Limit(_Terms):
    """A countable limit. Not enabled, or limit 0, means unlimited."""

    enabled: StrictBool = False
    limit: int = Field(default=0, ge=0, le=MAX_LIMIT)


class SSOTerms(_Terms):
    enforced_for_signin: StrictBool = False
    signin_protocol: SSOProtocol = ""
    enforced_for_web: StrictBool = False
    web_protocol: SSOProtocol = ""

    @model_validator(mode="after")
    def _protocol_when_enforced(self) -> SSOTerms:
        if self.enforced_for_signin and not self.signin_protocol:
            raise ValueError("signin_protocol is required when enforced_for_signin is true")
        if self.enforced_for_web and not self.web_protocol:
            raise ValueError("web_protocol is required when enforced_for_web is true")
        return self


class LoginTerms(_Terms):
    email_code: StrictBool = False
    email_password: StrictBool = True
    allow_register: StrictBool = False
    allow_create_workspace: StrictBool = False


class WebAppAuthTerms(_Terms):
    allow_sso: StrictBool = False
    allow_email_code: StrictBool = False
    allow_email_password: StrictBool = True


class BrandingTerms(_Terms):
    application_title: ShortText = ""
    login_page_logo: AssetReference = ""
    workspace_logo: AssetReference = ""
    favicon: AssetReference = ""


class PluginInstallationTerms(_Terms):
    scope: PluginScope = PluginScope.ALL
    restrict_to_marketplace_only: StrictBool = False


class WorkspacePolicy(_Terms):
    allow_member_invite: StrictBool = True
    allow_owner_transfer: StrictBool = True


class LicenseTerms(_Terms):
    """Every term with its default. As input, any subset may be given; unset fields inherit."""

    notice_days: int = Field(default=30, ge=0, le=3650, description="Days before expiry the status turns expiring")
    grace_days: int = Field(default=0, ge=0, le=3650, description="Days after expiry the license still works")
    enforcement: Enforcement = Enforcement.RESTRICT
    heartbeat_window_days: int = Field(
        default=7, ge=1, le=3650, description="Days without a check-in before an activated license is lost"
    )
    max_activations: int = Field(default=1, ge=0, le=MAX_LIMIT, description="Deployment seats; 0 = unlimited")
    workspaces: Limit = Limit()
    members_per_workspace: Limit = Limit()
    licensed_seats: Limit = Limit()
    sso: SSOTerms = SSOTerms()
    login: LoginTerms = LoginTerms()
    webapp_auth: WebAppAuthTerms = WebAppAuthTerms()
    branding: BrandingTerms = BrandingTerms()
    plugin_installation: PluginInstallationTerms = PluginInstallationTerms()
    workspace_policy: WorkspacePolicy = WorkspacePolicy()
    entitlements: dict[EntitlementName, EntitlementValue] = Field(default_factory=dict, max_length=200)

    @property
    def notice(self) -> timedelta:
        return timedelta(days=self.notice_days)

    @property
    def grace(self) -> timedelta:
        return timedelta(days=self.grace_days)

    @property
    def heartbeat_window(self) -> timedelta:
        return timedelta(days=self.heartbeat_window_days)


def terms_overrides(terms: LicenseTerms | None) -> dict[str, Any]:
    """Only the values the caller set: what a plan or license stores."""
    return {} if terms is None else terms.model_dump(mode="json", exclude_unset=True)


def merge_overrides(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge: nested objects merge key by key; everything else is replaced."""
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_overrides(merged[key], value)
        else:
            merged[key] = value
    return merged


def effective_terms(plan_overrides: dict[str, Any] | None, license_overrides: dict[str, Any]) -> LicenseTerms:
    return LicenseTerms.model_validate(merge_overrides(plan_overrides or {}, license_overrides))
