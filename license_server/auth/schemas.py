"""Bodies of the token and audit routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import Field

from license_server.auth.tokens import Role
from license_server.schemas_common import Model


class TokenCreate(Model):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    role: Role


class TokenOut(Model):
    id: uuid.UUID
    name: str
    role: Role
    token_hint: str = Field(description="Last characters of the token, to recognise it")
    created_at: datetime
    created_by: str
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenWithSecret(TokenOut):
    token: str = Field(description="The bearer token. Shown only in this response.")


class AuditEventOut(Model):
    id: int
    occurred_at: datetime
    actor: str
    action: str
    target_type: str
    target_id: str
    detail: dict[str, Any]
