"""Bodies of the deployment API and its admin views."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import Field

from license_server.schemas_common import Metadata, Model, UTCTimestamp

LicenseKey = Annotated[str, Field(min_length=1, max_length=128)]
Fingerprint = Annotated[str, Field(min_length=1, max_length=256)]


class ActivateRequest(Model):
    license_key: LicenseKey
    fingerprint: Fingerprint
    hostname: Annotated[str, Field(max_length=255)] | None = None
    product_version: Annotated[str, Field(max_length=64)] | None = None
    metadata: Metadata = Field(default_factory=dict)
    reissue_token: bool = Field(default=False, description="On an existing activation, issue a new token")


class ActivationCreated(Model):
    activation_id: uuid.UUID
    deployment_token: str | None = Field(
        description="Bearer token for /v1/license and /v1/usage. Shown only here; null when an existing "
        "activation is returned without reissue_token."
    )
    document: str = Field(description="The signed license document (JWS compact serialization)")


class ValidateRequest(Model):
    license_key: LicenseKey
    fingerprint: Fingerprint | None = None
    nonce: Annotated[str, Field(min_length=1, max_length=128)]


class ValidationOut(Model):
    valid: bool
    code: str = Field(
        description="VALID, or the first failing guard: NOT_FOUND, REVOKED, SUSPENDED, NOT_STARTED, EXPIRED, "
        "NO_ACTIVATION, FINGERPRINT_MISMATCH, HEARTBEAT_DEAD, TOO_MANY_ACTIVATIONS (EXPIRED is valid with "
        "enforcement 'maintain')"
    )
    detail: str
    status: str
    license_id: uuid.UUID | None = Field(description="The license the key belongs to; null when none (NOT_FOUND)")
    fingerprint: str | None = Field(description="The fingerprint asked about; null when none was given")
    nonce: str
    ts: int
    signed: str = Field(
        description="The same result as a JWS (typ license-validation+jwt): valid, code, detail, status, "
        "license_id, fingerprint and the nonce echoed"
    )


class WorkspaceUsageIn(Model):
    id: Annotated[str, Field(min_length=1, max_length=128)]
    members: Annotated[int, Field(ge=0, le=10_000_000)]


class UsageReportIn(Model):
    measured_at: UTCTimestamp
    workspaces: Annotated[list[WorkspaceUsageIn], Field(max_length=10_000)] = Field(default_factory=list)
    seats_used: Annotated[int, Field(ge=0, le=10_000_000)] = 0
    idempotency_key: Annotated[str, Field(min_length=1, max_length=128)]


class UsageOut(Model):
    workspaces: int
    members_per_workspace: int
    licensed_seats: int


class UsageAccepted(Model):
    report_id: int
    duplicate: bool = Field(description="True when this idempotency key was already counted")
    usage: UsageOut = Field(description="The license's usage now, across its deployments")
    over_limit: list[str] = Field(description="Limits the usage exceeds")


class ActivationOut(Model):
    id: uuid.UUID
    license_id: uuid.UUID
    fingerprint: str
    hostname: str | None
    product_version: str | None
    metadata: dict[str, Any]
    first_seen_at: datetime
    last_seen_at: datetime
    lost_at: datetime | None
    deactivated_at: datetime | None
    deactivated_by: str | None
    latest_usage: dict[str, Any] | None = Field(
        description="The current usage report of this activation: the latest measured_at"
    )


class DeactivatedOut(Model):
    activation_id: uuid.UUID
    deactivated_at: datetime
