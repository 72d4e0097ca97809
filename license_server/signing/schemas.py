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


class KeyBundleIn(Model):
    bundle: str = Field(max_length=20_000, description="The JSON text of a bundle from `keys rotate --out`")


class RevocationListIn(Model):
    revocations: str = Field(max_length=100_000, description="A root-signed list from `keys retire --out` (a JWS)")


class RevocationListOut(Model):
    sequence: int = Field(description="The list's number: holders refuse a list with a lower one")
    retired: list[str] = Field(description="Every issuing key retired so far")
