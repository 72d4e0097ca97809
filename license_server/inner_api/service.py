"""The inner-API service: every rule of Dify's enterprise inner API, once, for the vendor server and the edge.

What Dify calls (``info``, ``workspace_permission``, ``webapp_permissions``, ...) and what an operator manages (the
vendor's admin API and CLI, the edge's CLI: credentials, workspace overrides, the default workspace, web-app modes and
allow-lists) both come here. What differs between the two sides is behind the protocols of store.py: where terms and
status come from, which tables, how a secret is checked, and seats (the vendor binds each credential to an
activation; the edge serves one install per license file).

Functions take the store or the records first and keyword-only arguments. The records are one transaction: the
functions that write validate, write, audit and commit.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from license_server.errors import CredentialNotFound, ValidationFailed
from license_server.inner_api.mapping import (
    DEFAULT_ACCESS_MODE,
    AccessMode,
    permission_body,
    permissions_body,
    timestamp_body,
    workspace_info_body,
)
from license_server.inner_api.models import CredentialColumns, WorkspacePolicyColumns
from license_server.inner_api.schemas import ID_PATTERN
from license_server.inner_api.store import Caller, InnerApiRecords, InnerApiStore
from license_server.licenses.terms import WorkspacePolicy

SECRET_PREFIX = "lsia_"  # noqa: S105 - a public prefix that makes inner-API secrets recognisable
MAX_LABEL_LENGTH = 200
_ID = re.compile(ID_PATTERN)
C = TypeVar("C", bound=CredentialColumns)


def generate_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def dify_id(value: str, field: str) -> str:
    """A Dify id (app, user, workspace) as both sides accept it, or ``ValidationFailed`` naming the field."""
    if not _ID.match(value):
        raise ValidationFailed(f"{field} must be an id of up to 64 letters, digits and _.:@-", field=field)
    return value


# -- what Dify calls ------------------------------------------------------------------------------------------------
async def info(store: InnerApiStore, caller: Caller) -> bytes:
    """The serialised ``/info`` body, rebuilt only when the license's facts or status change."""
    return store.info_bodies.body(caller.license_id, await store.license_state(caller))


async def workspace_info(store: InnerApiStore, caller: Caller, *, workspace_id: str) -> dict[str, Any]:
    workspace_id = dify_id(workspace_id, "tenant_id")
    state = await store.license_state(caller)
    return workspace_info_body(state.terms, await store.workspace_members(caller, workspace_id))


async def workspace_permission(store: InnerApiStore, caller: Caller, *, workspace_id: str) -> dict[str, Any]:
    """The workspace's override, else the license's workspace policy."""
    dify_id(workspace_id, "workspace_id")
    async with store.records(caller) as records:
        override = await records.workspace_policy(workspace_id)
    if override is not None:
        policy = WorkspacePolicy(
            allow_member_invite=override.allow_member_invite, allow_owner_transfer=override.allow_owner_transfer
        )
    else:
        policy = (await store.license_state(caller)).terms.workspace_policy
    return permission_body(workspace_id, policy)


async def sso_app_changed_at(store: InnerApiStore, caller: Caller) -> str:
    return timestamp_body((await store.sso_change_times(caller)).app)


async def sso_signin_changed_at(store: InnerApiStore, caller: Caller) -> str:
    return timestamp_body((await store.sso_change_times(caller)).signin)


async def webapp_permissions(
    store: InnerApiStore, caller: Caller, *, user_id: str, app_ids: Sequence[str]
) -> dict[str, bool]:
    """May this user open each app: every mode but ``private`` lets every user in; ``private``, its allow-list."""
    async with store.records(caller) as records:
        modes = await access_modes(records, app_ids=app_ids)
        private = [app_id for app_id, mode in modes.items() if mode is AccessMode.PRIVATE]
        listed = await records.allow_listed_apps(user_id, private) if private else set()
    return permissions_body(modes, listed)


async def webapp_permission(store: InnerApiStore, caller: Caller, *, user_id: str, app_id: str) -> bool:
    return (await webapp_permissions(store, caller, user_id=user_id, app_ids=[app_id]))[app_id]


async def app_access_modes(store: InnerApiStore, caller: Caller, *, app_ids: Sequence[str]) -> dict[str, AccessMode]:
    async with store.records(caller) as records:
        return await access_modes(records, app_ids=app_ids)


async def set_app_access_mode(store: InnerApiStore, caller: Caller, *, app_id: str, mode: AccessMode) -> None:
    async with store.records(caller, write=True) as records:
        await set_access_mode(records, app_id=app_id, mode=mode)


async def forget_app(store: InnerApiStore, caller: Caller, *, app_id: str) -> None:
    """An app deleted in Dify: its mode and allow-list go too. Forgetting an unknown app is not an error."""
    async with store.records(caller, write=True) as records:
        await records.delete_app(dify_id(app_id, "app_id"))
        await records.commit()


async def join_default_workspace(store: InnerApiStore, caller: Caller, *, account_id: uuid.UUID) -> dict[str, Any]:
    """Add the account to the default workspace, once; without a default workspace, say so (not an error)."""
    async with store.records(caller, write=True) as records:
        workspace_id = await records.default_workspace()
        if workspace_id is None:
            message = "no default workspace is configured for this license"
            return {"workspaceId": "", "joined": False, "message": message}
        new = await records.add_default_workspace_member(workspace_id, str(account_id))
        await records.commit()
    message = "joined the default workspace" if new else "already a member of the default workspace"
    return {"workspaceId": workspace_id, "joined": True, "message": message}


# -- credentials ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CreatedCredential(Generic[C]):
    credential: C
    secret: str  # shown once, never stored


async def create_credential(records: InnerApiRecords[C], *, label: str = "") -> CreatedCredential[C]:
    if len(label) > MAX_LABEL_LENGTH:
        raise ValidationFailed(f"label must be at most {MAX_LABEL_LENGTH} characters", field="label")
    secret = generate_secret()
    credential = await records.add_credential(secret=secret, hint=secret[-4:], label=label)
    await records.audit("inner_api.credential_created", {"credential_id": str(credential.id), "label": label})
    await records.commit()
    return CreatedCredential(credential, secret)


async def list_credentials(records: InnerApiRecords[C]) -> Sequence[C]:
    return await records.credentials()


async def revoke_credential(records: InnerApiRecords[C], *, credential_id: uuid.UUID | str) -> C:
    """Idempotent: revoking a revoked credential returns it unchanged. Calls with it are refused from then on (and on
    the vendor its install's seat is freed in the same transaction)."""
    key = str(credential_id)
    credential = await records.credential(key)
    if credential is None:
        raise CredentialNotFound(f"{records.owner} has no credential {key}", field="credential_id")
    if credential.revoked_at is None:
        await records.revoke_credential(key)
        await records.audit("inner_api.credential_revoked", {"credential_id": key})
        await records.commit()
    return credential


# -- workspaces -----------------------------------------------------------------------------------------------------
async def set_workspace_policy(
    records: InnerApiRecords[Any], *, workspace_id: str, allow_member_invite: bool, allow_owner_transfer: bool
) -> WorkspacePolicyColumns:
    policy = WorkspacePolicy(allow_member_invite=allow_member_invite, allow_owner_transfer=allow_owner_transfer)
    await records.put_workspace_policy(dify_id(workspace_id, "workspace_id"), policy)
    await records.audit("inner_api.workspace_policy_set", {"workspace_id": workspace_id, **policy.model_dump()})
    await records.commit()
    row = await records.workspace_policy(workspace_id)
    assert row is not None
    return row


async def clear_workspace_policy(records: InnerApiRecords[Any], *, workspace_id: str) -> bool:
    """Back to the license's default policy. True if an override was removed."""
    removed = await records.delete_workspace_policy(dify_id(workspace_id, "workspace_id"))
    if removed:
        await records.audit("inner_api.workspace_policy_cleared", {"workspace_id": workspace_id})
    await records.commit()
    return removed


async def list_workspace_policies(records: InnerApiRecords[Any]) -> Sequence[WorkspacePolicyColumns]:
    return await records.workspace_policies()


async def set_default_workspace(records: InnerApiRecords[Any], *, workspace_id: uuid.UUID | str | None) -> str | None:
    """Set (a Dify workspace id, a UUID) or clear (None) the workspace new accounts join; returns it."""
    value = None
    if workspace_id is not None:
        try:
            value = str(uuid.UUID(str(workspace_id)))
        except ValueError as exc:
            raise ValidationFailed("workspace_id must be a UUID (a Dify workspace id)", field="workspace_id") from exc
    await records.put_default_workspace(value)
    await records.audit("inner_api.default_workspace_set", {"workspace_id": value})
    await records.commit()
    return value


# -- web apps -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AppAccess:
    app_id: str
    access_mode: AccessMode
    allowed_users: list[str]


async def access_modes(records: InnerApiRecords[Any], *, app_ids: Iterable[str]) -> dict[str, AccessMode]:
    """Every requested app's mode (each once, in the order asked); apps never set are ``private``."""
    wanted = list(dict.fromkeys(app_ids))
    stored = await records.stored_access_modes(wanted) if wanted else {}
    return {app_id: AccessMode(stored[app_id]) if app_id in stored else DEFAULT_ACCESS_MODE for app_id in wanted}


async def app_access(records: InnerApiRecords[Any], *, app_id: str) -> AppAccess:
    app_id = dify_id(app_id, "app_id")
    modes = await access_modes(records, app_ids=[app_id])
    return AppAccess(app_id, modes[app_id], await records.allowed_users(app_id))


async def set_access_mode(records: InnerApiRecords[Any], *, app_id: str, mode: AccessMode) -> None:
    await records.put_access_mode(dify_id(app_id, "app_id"), mode.value)
    await records.audit("inner_api.access_mode_set", {"app_id": app_id, "access_mode": mode.value})
    await records.commit()


async def allow_users(records: InnerApiRecords[Any], *, app_id: str, user_ids: Iterable[str]) -> AppAccess:
    """Add users to a private app's allow-list (adding one already there changes nothing)."""
    dify_id(app_id, "app_id")
    users = [dify_id(user, "user_ids") for user in dict.fromkeys(user_ids)]
    if not users:
        raise ValidationFailed("name at least one user", field="user_ids")
    await records.add_allowed_users(app_id, users)
    await records.audit("inner_api.app_users_allowed", {"app_id": app_id, "user_ids": users})
    await records.commit()
    return await app_access(records, app_id=app_id)


async def disallow_user(records: InnerApiRecords[Any], *, app_id: str, user_id: str) -> AppAccess:
    await records.delete_allowed_user(dify_id(app_id, "app_id"), dify_id(user_id, "user_id"))
    await records.audit("inner_api.app_user_disallowed", {"app_id": app_id, "user_id": user_id})
    await records.commit()
    return await app_access(records, app_id=app_id)
