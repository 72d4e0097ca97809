"""The edge operator's management of the inner API, through the edge CLI (the edge has no admin API).

Credentials (shown once, stored as SHA-256), workspace policy overrides, web-app access modes and allow-lists, and
the default workspace, all in the edge's SQLite file. Each function takes the session, validates, and commits.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.edge.inner_models import (
    EdgeAppAccessMode,
    EdgeAppAllowedUser,
    EdgeInnerCredential,
    EdgeInnerSettings,
    EdgeWorkspacePolicy,
)
from license_server.errors import CredentialNotFound, ValidationFailed
from license_server.inner_api.mapping import DEFAULT_ACCESS_MODE, AccessMode
from license_server.inner_api.schemas import ID_PATTERN
from license_server.inner_api.service import generate_secret

_ID = re.compile(ID_PATTERN)


def secret_digest(secret: str) -> str:
    """SHA-256 of the secret. Unkeyed on purpose: the edge has no server key, and a 256-bit random secret cannot
    be guessed from its digest (unlike a password), so a copy of edge.db does not reveal a usable secret."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def dify_id(value: str, field: str) -> str:
    if not _ID.match(value):
        raise ValidationFailed(f"{field} must be an id of up to 64 letters, digits and _.:@-", field=field)
    return value


# -- credentials ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CreatedCredential:
    credential: EdgeInnerCredential
    secret: str  # shown once, never stored


async def create_credential(session: AsyncSession, *, label: str, now: datetime) -> CreatedCredential:
    if len(label) > 200:
        raise ValidationFailed("label must be at most 200 characters", field="label")
    secret = generate_secret()
    credential = EdgeInnerCredential(
        id=str(uuid.uuid4()),
        secret_hash=secret_digest(secret),
        secret_hint=secret[-4:],
        label=label,
        created_at=now,
        revoked_at=None,
    )
    session.add(credential)
    await session.commit()
    return CreatedCredential(credential, secret)


async def list_credentials(session: AsyncSession) -> list[EdgeInnerCredential]:
    rows = await session.scalars(select(EdgeInnerCredential).order_by(EdgeInnerCredential.created_at))
    return list(rows.all())


async def revoke_credential(session: AsyncSession, *, credential_id: str, now: datetime) -> EdgeInnerCredential:
    """Idempotent: revoking a revoked credential returns it unchanged. Calls with it are 401 from the next one."""
    credential = await session.get(EdgeInnerCredential, credential_id)
    if credential is None:
        raise CredentialNotFound(f"this edge has no credential {credential_id}", field="credential_id")
    if credential.revoked_at is None:
        credential.revoked_at = now
        await session.commit()
    return credential


# -- workspaces -------------------------------------------------------------------------------------------------
async def set_workspace_policy(
    session: AsyncSession, *, workspace_id: str, allow_member_invite: bool, allow_owner_transfer: bool, now: datetime
) -> EdgeWorkspacePolicy:
    dify_id(workspace_id, "workspace_id")
    values = {"allow_member_invite": allow_member_invite, "allow_owner_transfer": allow_owner_transfer}
    statement = insert(EdgeWorkspacePolicy).values(workspace_id=workspace_id, updated_at=now, **values)
    await session.execute(
        statement.on_conflict_do_update(index_elements=["workspace_id"], set_={**values, "updated_at": now})
    )
    await session.commit()
    row = await session.get(EdgeWorkspacePolicy, workspace_id, populate_existing=True)
    assert row is not None
    return row


async def clear_workspace_policy(session: AsyncSession, *, workspace_id: str) -> bool:
    """Back to the license file's default policy. True if an override was removed."""
    result = await session.execute(
        delete(EdgeWorkspacePolicy).where(EdgeWorkspacePolicy.workspace_id == dify_id(workspace_id, "workspace_id"))
    )
    await session.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def list_workspace_policies(session: AsyncSession) -> list[EdgeWorkspacePolicy]:
    return list((await session.scalars(select(EdgeWorkspacePolicy).order_by(EdgeWorkspacePolicy.workspace_id))).all())


async def default_workspace(session: AsyncSession) -> str | None:
    row = await session.get(EdgeInnerSettings, 1, populate_existing=True)
    return row.default_workspace_id if row else None


async def set_default_workspace(session: AsyncSession, *, workspace_id: str | None) -> None:
    value = None
    if workspace_id is not None:
        try:
            value = str(uuid.UUID(workspace_id))
        except ValueError as exc:
            raise ValidationFailed("workspace_id must be a UUID (a Dify workspace id)", field="workspace_id") from exc
    statement = insert(EdgeInnerSettings).values(id=1, default_workspace_id=value)
    await session.execute(statement.on_conflict_do_update(index_elements=["id"], set_={"default_workspace_id": value}))
    await session.commit()


# -- web apps ---------------------------------------------------------------------------------------------------
async def access_modes(session: AsyncSession, *, app_ids: list[str]) -> dict[str, AccessMode]:
    """Every requested app's mode; apps never set are ``private``."""
    wanted = list(dict.fromkeys(app_ids))
    stored: dict[str, AccessMode] = {}
    if wanted:
        rows = await session.execute(
            select(EdgeAppAccessMode.app_id, EdgeAppAccessMode.access_mode).where(EdgeAppAccessMode.app_id.in_(wanted))
        )
        stored = {app_id: AccessMode(mode) for app_id, mode in rows.all()}
    return {app_id: stored.get(app_id, DEFAULT_ACCESS_MODE) for app_id in wanted}


async def set_access_mode(session: AsyncSession, *, app_id: str, mode: AccessMode, now: datetime) -> None:
    statement = insert(EdgeAppAccessMode).values(
        app_id=dify_id(app_id, "app_id"), access_mode=mode.value, updated_at=now
    )
    await session.execute(
        statement.on_conflict_do_update(index_elements=["app_id"], set_={"access_mode": mode.value, "updated_at": now})
    )
    await session.commit()


async def forget_app(session: AsyncSession, *, app_id: str) -> None:
    await session.execute(delete(EdgeAppAccessMode).where(EdgeAppAccessMode.app_id == app_id))
    await session.execute(delete(EdgeAppAllowedUser).where(EdgeAppAllowedUser.app_id == app_id))
    await session.commit()


async def allow_listed_apps(session: AsyncSession, *, user_id: str, app_ids: list[str]) -> set[str]:
    wanted = list(dict.fromkeys(app_ids))
    if not wanted:
        return set()
    rows = await session.scalars(
        select(EdgeAppAllowedUser.app_id).where(
            EdgeAppAllowedUser.user_id == user_id, EdgeAppAllowedUser.app_id.in_(wanted)
        )
    )
    return set(rows.all())


@dataclass(frozen=True)
class AppAccess:
    app_id: str
    access_mode: AccessMode
    allowed_users: list[str]


async def app_access(session: AsyncSession, *, app_id: str) -> AppAccess:
    modes = await access_modes(session, app_ids=[dify_id(app_id, "app_id")])
    users = await session.scalars(
        select(EdgeAppAllowedUser.user_id)
        .where(EdgeAppAllowedUser.app_id == app_id)
        .order_by(EdgeAppAllowedUser.user_id)
    )
    return AppAccess(app_id, modes[app_id], list(users.all()))


async def allow_users(session: AsyncSession, *, app_id: str, user_ids: list[str], now: datetime) -> AppAccess:
    """Add users to a private app's allow-list (adding one already there changes nothing)."""
    dify_id(app_id, "app_id")
    users = [dify_id(user, "user_id") for user in dict.fromkeys(user_ids)]
    if not users:
        raise ValidationFailed("name at least one user", field="user_ids")
    statement = insert(EdgeAppAllowedUser).values([{"app_id": app_id, "user_id": u, "added_at": now} for u in users])
    await session.execute(statement.on_conflict_do_nothing())
    await session.commit()
    return await app_access(session, app_id=app_id)


async def disallow_user(session: AsyncSession, *, app_id: str, user_id: str) -> AppAccess:
    await session.execute(
        delete(EdgeAppAllowedUser).where(
            EdgeAppAllowedUser.app_id == dify_id(app_id, "app_id"),
            EdgeAppAllowedUser.user_id == dify_id(user_id, "user_id"),
        )
    )
    await session.commit()
    return await app_access(session, app_id=app_id)
