"""Bodies of the offline admin API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import Field

from license_server.deployments.schemas import UsageOut
from license_server.schemas_common import Model

MAX_FILE_CHARS = 1024 * 1024


class OfflineRequestIn(Model):
    request: dict[str, Any] = Field(description="The activation request file's JSON object, as the install wrote it")


class OfflineRenewalIn(Model):
    license_file: Annotated[str, Field(min_length=1, max_length=MAX_FILE_CHARS)] = Field(
        description="An earlier license file of the install (it may have expired)"
    )


class OfflineUsageIn(Model):
    report: dict[str, Any] = Field(description="The usage report file's JSON object, as the install wrote it")


class LicenseFileOut(Model):
    license_file: str = Field(description="The armored license file; save it as is (e.g. customer.lic)")
    license_id: uuid.UUID
    activation_id: uuid.UUID
    created: bool = Field(description="True when this answer took a new activation (a seat)")
    expires_at: datetime = Field(description="When the file itself expires: the license's grace end")


class UsageImportedOut(Model):
    license_id: uuid.UUID
    activation_id: uuid.UUID
    seq: int
    measurements: int
    usage: UsageOut = Field(description="The license's usage now, across its deployments")
    over_limit: list[str]
