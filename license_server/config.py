"""The one settings object. Every value comes from the environment (prefix ``LICENSE_SERVER_``)."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from datetime import timedelta
from functools import cached_property
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from license_server.errors import UnknownSetting

DATABASE_FILE_NAME = "license-server.db"
ENV_PREFIX = "LICENSE_SERVER_"
# LICENSE_SERVER_* variables that are not settings of the server: the test suite's switches. Anything else with the
# prefix that names no setting is a typo, and a typo must not silently fall back to a default (a misspelt
# DATABASE_URL would serve a fresh local SQLite database).
NOT_SETTINGS = frozenset({"LICENSE_SERVER_REQUIRE_POSTGRES", "LICENSE_SERVER_REQUIRE_BROWSER"})


DifyPlanName = Literal["sandbox", "professional", "team"]


_SEED_000_PLANS: dict[DifyPlanName, list[str]] = {
    "sandbox": ["dify-sandbox"],
    "professional": ["dify-professional"],
    "team": ["dify-team"],
}


class DifyBillingSettings(BaseModel):
    """How Dify Cloud's billing API (``/inner/billing``, docs/inner-billing.md) names our plans, keys and features.

    Set as JSON in ``LICENSE_SERVER_DIFY_BILLING`` or field by field, e.g. ``LICENSE_SERVER_DIFY_BILLING__PLANS``.
    The defaults fit the seed 000 catalogue, examples/plans/dify-cloud.json.
    """

    model_config = ConfigDict(extra="forbid")

    # Dify's plan name -> our plan codes (the first is the one Dify's own name stands for in docs and tests).
    plans: dict[DifyPlanName, list[str]] = Field(default_factory=lambda: dict(_SEED_000_PLANS))
    # What Dify is told for an active plan the mapping does not name. A paid name, so Dify's retention jobs (which
    # delete a sandbox workspace's old logs) never touch a workspace someone pays for; its limits come from the plan.
    unmapped_plan: DifyPlanName = "professional"
    # Dify's gauge and counter names -> our quota keys (total quotas for the gauges, monthly ones for the counters).
    keys: dict[str, str] = Field(
        default_factory=lambda: {
            "members": "members",
            "apps": "apps",
            "vector_space": "vector_space_mb",
            "documents_upload_quota": "documents_upload",
            "annotation_quota_limit": "annotation_quota",
            "trigger_event": "trigger_event",
            "api_rate_limit": "api_rate_limit",
        }
    )
    # Dify's plan switches -> our plans' feature names.
    features: dict[str, str] = Field(
        default_factory=lambda: {
            "docs_processing": "document_processing_priority",
            "can_replace_logo": "logo_change",
            "model_load_balancing_enabled": "model_load_balancing",
            "knowledge_pipeline_publish_enabled": "knowledge_pipeline_publish",
        }
    )
    # The plans' rate limit (``rate_limits``) that is Dify's knowledge-base request limit (requests per minute).
    knowledge_rate_limit_key: str = "knowledge_requests"
    # How long a reservation Dify never commits or releases is held (Dify's client says "within ~75 seconds").
    reservation_ttl_seconds: int = Field(default=75, ge=1, le=86400)
    # Where Dify sends users to pay, see invoices, buy model credits and download compliance documents: URL
    # templates with {tenant_id}, {plan}, {interval}, {prefilled_email}, {account_id}, {provider_name}, {doc_name}
    # (each URL-encoded). Empty: Dify gets {"url": ""} (the route answers; there is nowhere to send the user yet).
    payment_link_url: str = ""
    invoices_url: str = ""
    model_provider_payment_url: str = ""
    compliance_download_url: str = ""

    @field_validator("keys", "features", mode="after")
    @classmethod
    def _over_the_defaults(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        """Naming one entry changes that entry; the others keep their defaults. Unknown Dify names are refused."""
        defaults = cls.model_fields[info.field_name or ""].get_default(call_default_factory=True)
        unknown = sorted(set(value) - set(defaults))
        if unknown:
            raise ValueError(f"not a Dify name: {', '.join(unknown)} (known: {', '.join(sorted(defaults))})")
        return {**defaults, **value}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore")

    def __init__(self, **values: object) -> None:
        check_environment(os.environ)
        super().__init__(**values)  # type: ignore[arg-type]

    data_dir: Path = Path("data")
    keys_dir: Path = Path("keys")
    # The key host's root directory (`keys root init`, `keys rotate`, `keys retire`); servers never read it.
    # Unset means keys_dir/root, where `init --dev` puts the development root.
    root_keys_dir: Path | None = None
    # Unset means the embedded SQLite file in data_dir; a postgresql+asyncpg:// URL scales out.
    database_url: str | None = None
    # The private-key passphrase: from the environment, else from passphrase_file (default keys_dir/passphrase).
    key_passphrase: SecretStr | None = None
    key_passphrase_file: Path | None = None
    # Development only: accept private keys stored without encryption.
    allow_unencrypted_keys: bool = False

    issuer: str = "license-server"
    # How long a signed document stays valid; distinct from the license's own expiry.
    document_ttl_seconds: int = Field(default=3 * 24 * 3600, ge=60)
    host: str = "127.0.0.1"
    port: int = 8000
    # Seconds a signing process trusts its loaded keyring before checking the directory for rotations.
    keyring_refresh_seconds: float = 5.0

    # The poll path: how stale a cached activation or license may be, and how often check-ins are written.
    poll_cache_seconds: float = Field(default=5.0, ge=0, le=60)
    checkin_flush_seconds: float = Field(default=2.0, gt=0, le=60)
    # Scheduler: the lifecycle sweep and webhook deliveries. serve runs them in-process unless told not to.
    sweep_interval_seconds: float = Field(default=60.0, gt=0)
    webhook_interval_seconds: float = Field(default=5.0, gt=0)
    # Webhooks go to public addresses only; these networks (CIDR, comma-separated) are allowed besides, for receivers
    # on the vendor's own network, e.g. "10.20.0.0/16,fd12:3456::/48". Loopback too, if listed ("127.0.0.0/8").
    webhook_allowed_networks: Annotated[list[IPv4Network | IPv6Network], NoDecode] = Field(default_factory=list)
    # Hosted billing: how often expired credit grants are forfeited and each cycle's included credits granted.
    credits_rollover_interval_seconds: float = Field(default=60.0, gt=0)
    # Invoices: how often due invoices are issued (each subscription's period start), the payment terms (due date =
    # issue + net days), the number prefixes and the issuer printed on every PDF.
    invoice_interval_seconds: float = Field(default=60.0, gt=0)
    invoice_net_days: int = Field(default=14, ge=0, le=365)
    invoice_number_prefix: str = Field(default="INV-", pattern=r"^[A-Z0-9-]{0,12}$")
    credit_note_number_prefix: str = Field(default="CN-", pattern=r"^[A-Z0-9-]{0,12}$")
    invoice_issuer: str = Field(default="License Server", max_length=200)
    # PDFs of issued invoices are rendered by a job (and on first download), never in the issuing transaction.
    invoice_pdf_interval_seconds: float = Field(default=30.0, gt=0)
    # Stripe (payments/stripe_provider.py): the secret API key and the webhook endpoint's signing secret. Unset: the
    # Stripe routes answer 503 payment_provider_unavailable. Masked in every repr; never logged.
    stripe_secret_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    # Only for tests and stripe-mock: another address for Stripe's API. Unset: the library's own.
    stripe_api_base: str | None = None
    stripe_checkout_success_url: str = "https://example.com/billing/paid"
    stripe_checkout_cancel_url: str = "https://example.com/billing/canceled"
    stripe_portal_return_url: str = "https://example.com/billing"
    # Hosted billing: how often due subscriptions are rolled (renewals, scheduled downgrades and cancellations, trial
    # ends), and how long an issued, unpaid amount may stay unpaid after its due date before the subscription is
    # past due (the invoices side records the due date with this grace).
    subscription_renewal_interval_seconds: float = Field(default=60.0, gt=0)
    payment_grace_days: int = Field(default=3, ge=0, le=90)
    # Unauthenticated routes (activate, validate): requests per minute per client address and per license key.
    rate_limit_per_address: int = Field(default=60, ge=1)
    rate_limit_per_license_key: int = Field(default=20, ge=1)
    # Different wrong secrets per minute per client address and credential kind (admin token, deployment token,
    # inner-API secret) before that kind gets 429s from that address.
    rate_limit_failed_auth_per_address: int = Field(default=30, ge=1)
    # Reverse proxies (CIDR list, comma-separated) whose X-Forwarded-For is believed for the client address that rate
    # limits count against. Empty: the peer's own address always, whatever a forwarded header says.
    trusted_proxies: Annotated[list[IPv4Network | IPv6Network], NoDecode] = Field(default_factory=list)
    # Dify Cloud's billing API at /inner/billing: plan names, keys, features and links (see DifyBillingSettings).
    dify_billing: DifyBillingSettings = Field(default_factory=DifyBillingSettings)
    # Dify's own PostgreSQL database, read by `billing dify-sync` (a read-only role is enough); it carries a password.
    dify_database_url: SecretStr | None = None
    # serve's and scheduler's log level (uvicorn's too). Nothing secret is logged at any level.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # JSON lines, or readable console lines; auto: console on a terminal, JSON otherwise (containers, systemd).
    log_format: Literal["auto", "json", "console"] = "auto"
    # One INFO line per HTTP request (method, route, status, duration, request id). Off by default: the counts and
    # latencies are in /metrics, and a line per poll costs the poll path more than the 3 % its budget allows.
    access_log: bool = False
    # Prometheus metrics, off the public listener unless asked: /metrics answers 404 without a token; with one it
    # takes `Authorization: Bearer <token>`. metrics_port serves them on a port of their own (on metrics_host).
    metrics_token: SecretStr | None = None
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_host: str = "127.0.0.1"
    # Readiness (/health/ready) turns unready when a scheduled job has failed this many runs in a row.
    job_failures_unready: int = Field(default=3, ge=1)

    # The edge (install side): its state directory, and the bearer token it requires on /v1 when set.
    edge_data_dir: Path = Path("edge-data")
    edge_token: SecretStr | None = None
    # The install key's passphrase (offline request, usage reports, edge); else the install's passphrase file.
    install_key_passphrase: SecretStr | None = None

    @field_validator("trusted_proxies", "webhook_allowed_networks", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / DATABASE_FILE_NAME).resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @property
    def document_ttl(self) -> timedelta:
        return timedelta(seconds=self.document_ttl_seconds)

    @property
    def root_dir(self) -> Path:
        return self.root_keys_dir or self.keys_dir / "root"

    @property
    def passphrase_path(self) -> Path:
        return self.key_passphrase_file or self.keys_dir / "passphrase"


def known_environment_names() -> frozenset[str]:
    return frozenset(ENV_PREFIX + name.upper() for name in Settings.model_fields)


def check_environment(environ: Mapping[str, str]) -> None:
    """Refuse a LICENSE_SERVER_* variable that names no setting, with the closest known name."""
    known = known_environment_names()
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in known or upper in NOT_SETTINGS:
            continue
        # One field of a nested setting (LICENSE_SERVER_DIFY_BILLING__PLANS): its setting must exist.
        if "__" in upper and upper.split("__", 1)[0] in known:
            continue
        closest = difflib.get_close_matches(upper, sorted(known), n=1, cutoff=0.6)
        raise UnknownSetting(name, closest[0] if closest else None)


SECRET_SETTINGS = frozenset(name for name, info in Settings.model_fields.items() if "SecretStr" in str(info.annotation))


def effective_settings(settings: Settings) -> dict[str, object]:
    """Every setting as in force, secrets masked: set ones shown as ``********``, and a database URL's password."""
    from sqlalchemy.engine import make_url

    shown: dict[str, object] = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if name in SECRET_SETTINGS:
            shown[name] = "********" if value is not None else None
        elif name == "database_url" and value:
            shown[name] = make_url(value).render_as_string(hide_password=True)
        elif isinstance(value, Path):
            shown[name] = str(value)
        elif isinstance(value, list):
            shown[name] = [str(item) for item in value]
        else:
            shown[name] = value
    shown["resolved_database_url"] = make_url(settings.resolved_database_url).render_as_string(hide_password=True)
    return shown
