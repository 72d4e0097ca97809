"""Bodies of the key-management routes."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from license_server.schemas_common import Model


class SigningKeyOut(Model):
    kid: str = Field(description="RFC 7638 thumbprint of the public key")
    created_at: datetime
    retired_at: datetime | None
    signer: bool = Field(description="Whether new documents are signed with this key")


class JWKSOut(Model):
    keys: list[dict[str, object]]
