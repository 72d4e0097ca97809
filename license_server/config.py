"""The one settings object. Every value comes from the environment (prefix ``LICENSE_SERVER_``)."""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DATABASE_FILE_NAME = "license-server.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LICENSE_SERVER_", extra="ignore")

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
    # serve's and scheduler's log level (uvicorn's too). Nothing secret is logged at any level.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

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
