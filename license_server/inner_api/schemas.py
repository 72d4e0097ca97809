"""Bodies of the inner API (Dify's field names, camelCase) and of its admin routes (snake_case, like the rest)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from license_server.inner_api.mapping import AccessMode
from license_server.schemas_common import Model

# Dify's ids are UUIDs; anything id-shaped is accepted, nothing that could smuggle a path or whitespace.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$"
DifyId = Annotated[str, Field(pattern=ID_PATTERN, description="A Dify id (app, user, workspace), up to 64 chars")]
MAX_BATCH = 1000


class _DifyBody(BaseModel):
    """Dify's request bodies: its field names; unknown fields ignored, so a newer client still gets through."""

    model_config = ConfigDict(extra="ignore")


class PermissionBatchIn(_DifyBody):
    user_id: DifyId = Field(alias="userId")
    app_ids: list[DifyId] = Field(alias="appIds", max_length=MAX_BATCH)


class AccessModeBatchIn(_DifyBody):
    app_ids: list[DifyId] = Field(alias="appIds", max_length=MAX_BATCH)


class AccessModeIn(_DifyBody):
    app_id: DifyId = Field(alias="appId")
    access_mode: Literal["public", "private", "private_all"] = Field(alias="accessMode")


class DefaultWorkspaceJoinIn(_DifyBody):
    account_id: uuid.UUID


# -- admin ------------------------------------------------------------------------------------------------------
class CredentialCreate(Model):
    label: Annotated[str, Field(max_length=200)] = ""


class CredentialOut(Model):
    id: uuid.UUID
    license_id: uuid.UUID
    label: str
    hint: str = Field(description="The secret's last characters, to recognise it")
    created_at: datetime
    created_by: str
    revoked_at: datetime | None


class CredentialCreated(CredentialOut):
    secret: str = Field(description="Set as ENTERPRISE_API_SECRET_KEY in Dify. Shown only here.")


class InnerApiSettingsOut(Model):
    license_id: uuid.UUID
    default_workspace_id: str | None
    sso_app_changed_at: datetime
    sso_signin_changed_at: datetime


class DefaultWorkspaceIn(Model):
    workspace_id: uuid.UUID | None = Field(description="The Dify workspace new accounts join; null for none")


class WorkspacePolicyIn(Model):
    allow_member_invite: bool
    allow_owner_transfer: bool


class WorkspacePolicyOut(WorkspacePolicyIn):
    workspace_id: str
    updated_at: datetime


class WorkspacePolicyCleared(Model):
    workspace_id: str
    removed: bool


class AccessModeSet(Model):
    access_mode: AccessMode


class AllowedUsersIn(Model):
    user_ids: list[DifyId] = Field(min_length=1, max_length=MAX_BATCH)


class AppAccessOut(Model):
    app_id: str
    access_mode: AccessMode
    allowed_users: list[str]
