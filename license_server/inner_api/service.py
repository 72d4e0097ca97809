"""Vendor-side management of the inner API: credentials, workspace overrides, default workspace, web-app access.

Services take the session and keyword-only arguments, commit, and audit every change. The inner API's own reads and
writes (what a Dify deployment calls) go through ``store.SqlInnerApiStore``, which uses the same functions.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.audit import record_audit
from license_server.auth.hashing import SecretHasher
from license_server.auth.tokens import Actor
from license_server.clock import Clock, utcnow
from license_server.db.session import dialect_insert
from license_server.deployments.models import Activation
from license_server.errors import CredentialNotFound, LicenseNotFound
from license_server.events.service import EventType, emit_event
from license_server.inner_api.mapping import DEFAULT_ACCESS_MODE, AccessMode
from license_server.inner_api.models import (
    AppAccessMode,
    AppAllowedUser,
    InnerApiCredential,
    WorkspacePolicyOverride,
)
from license_server.licenses.models import InnerApiLicenseSettings, License

SECRET_PREFIX = "lsia_"  # noqa: S105 - a public prefix that makes inner-API secrets recognisable
MAX_SECRET_LENGTH = 128
# Each credential is one Dify install, holding one seat through an activation of this fingerprint (docs/inner-api.md).
INSTALL_FINGERPRINT_PREFIX = "dify-inner-api:"


def install_fingerprint(credential_id: uuid.UUID) -> str:
    """The fingerprint of the activation a credential's Dify install holds its seat with."""
    return f"{INSTALL_FINGERPRINT_PREFIX}{credential_id}"


def generate_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


async def _require_license(session: AsyncSession, license_id: uuid.UUID) -> License:
    license = await session.get(License, license_id)
    if license is None:
        raise LicenseNotFound(f"no license with id {license_id}", field="license_id")
    return license


# -- credentials ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CreatedCredential:
    credential: InnerApiCredential
    secret: str  # shown once, never stored


async def create_credential(
    session: AsyncSession,
    *,
    actor: Actor,
    hasher: SecretHasher,
    license_id: uuid.UUID,
    label: str = "",
    clock: Clock = utcnow,
) -> CreatedCredential:
    await _require_license(session, license_id)
    secret = generate_secret()
    credential = InnerApiCredential(
        id=uuid.uuid4(),
        license_id=license_id,
        secret_hash=hasher.digest(secret),
        secret_hint=secret[-4:],
        label=label,
        created_at=clock(),
        created_by=actor.name,
    )
    session.add(credential)
    await record_audit(
        session,
        actor=actor,
        action="inner_api.credential_created",
        target_type="license",
        target_id=license_id,
        detail={"credential_id": str(credential.id), "label": label},
        clock=clock,
    )
    await session.commit()
    return CreatedCredential(credential, secret)


async def list_credentials(session: AsyncSession, *, license_id: uuid.UUID) -> list[InnerApiCredential]:
    await _require_license(session, license_id)
    rows = await session.scalars(
        select(InnerApiCredential)
        .where(InnerApiCredential.license_id == license_id)
        .order_by(InnerApiCredential.created_at, InnerApiCredential.id)
    )
    return list(rows.all())


async def revoke_credential(
    session: AsyncSession, *, actor: Actor, license_id: uuid.UUID, credential_id: uuid.UUID, clock: Clock = utcnow
) -> InnerApiCredential:
    """Idempotent: revoking a revoked credential returns it unchanged. Its install's seat is freed with it (the
    activation it holds is deactivated in the same transaction)."""
    credential = await session.get(InnerApiCredential, credential_id)
    if credential is None or credential.license_id != license_id:
        raise CredentialNotFound(f"license {license_id} has no credential {credential_id}", field="credential_id")
    if not credential.is_revoked:
        now = clock()
        credential.revoke(now, actor.name)
        activation = await session.scalar(
            select(Activation).where(
                Activation.license_id == license_id,
                Activation.fingerprint == install_fingerprint(credential_id),
                Activation.deactivated_at.is_(None),
            )
        )
        if activation is not None:
            activation.deactivated_at, activation.deactivated_by = now, actor.name
            emit_event(
                session,
                type=EventType.ACTIVATION_DEACTIVATED,
                license_id=license_id,
                activation_id=activation.id,
                data={"by": actor.name, "credential_id": str(credential_id)},
                clock=clock,
            )
        await record_audit(
            session,
            actor=actor,
            action="inner_api.credential_revoked",
            target_type="license",
            target_id=license_id,
            detail={"credential_id": str(credential_id)},
            clock=clock,
        )
        await session.commit()
    return credential


# -- workspace policy overrides ---------------------------------------------------------------------------------
async def set_workspace_policy(
    session: AsyncSession,
    *,
    actor: Actor,
    license_id: uuid.UUID,
    workspace_id: str,
    allow_member_invite: bool,
    allow_owner_transfer: bool,
    clock: Clock = utcnow,
) -> WorkspacePolicyOverride:
    await _require_license(session, license_id)
    values = {"allow_member_invite": allow_member_invite, "allow_owner_transfer": allow_owner_transfer}
    statement = dialect_insert(session, WorkspacePolicyOverride).values(
        license_id=license_id, workspace_id=workspace_id, updated_at=clock(), **values
    )
    statement = statement.on_conflict_do_update(
        index_elements=["license_id", "workspace_id"], set_={**values, "updated_at": clock()}
    )
    await session.execute(statement)
    await record_audit(
        session,
        actor=actor,
        action="inner_api.workspace_policy_set",
        target_type="license",
        target_id=license_id,
        detail={"workspace_id": workspace_id, **values},
        clock=clock,
    )
    await session.commit()
    row = await session.get(WorkspacePolicyOverride, (license_id, workspace_id), populate_existing=True)
    assert row is not None
    return row


async def clear_workspace_policy(
    session: AsyncSession, *, actor: Actor, license_id: uuid.UUID, workspace_id: str, clock: Clock = utcnow
) -> bool:
    """Back to the license's default policy. True if an override was removed."""
    await _require_license(session, license_id)
    result = await session.execute(
        delete(WorkspacePolicyOverride).where(
            WorkspacePolicyOverride.license_id == license_id, WorkspacePolicyOverride.workspace_id == workspace_id
        )
    )
    removed = bool(result.rowcount)  # type: ignore[attr-defined]
    if removed:
        await record_audit(
            session,
            actor=actor,
            action="inner_api.workspace_policy_cleared",
            target_type="license",
            target_id=license_id,
            detail={"workspace_id": workspace_id},
            clock=clock,
        )
    await session.commit()
    return removed


async def list_workspace_policies(session: AsyncSession, *, license_id: uuid.UUID) -> list[WorkspacePolicyOverride]:
    await _require_license(session, license_id)
    rows = await session.scalars(
        select(WorkspacePolicyOverride)
        .where(WorkspacePolicyOverride.license_id == license_id)
        .order_by(WorkspacePolicyOverride.workspace_id)
    )
    return list(rows.all())


# -- per-license settings ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InnerApiSettingsView:
    license_id: uuid.UUID
    default_workspace_id: str | None
    sso_app_changed_at: datetime
    sso_signin_changed_at: datetime


async def get_settings(session: AsyncSession, *, license_id: uuid.UUID) -> InnerApiSettingsView:
    """The settings with their defaults: SSO switches unchanged since issue count as changed at issue."""
    license = await _require_license(session, license_id)
    row = await session.get(InnerApiLicenseSettings, license_id, populate_existing=True)
    return InnerApiSettingsView(
        license_id=license_id,
        default_workspace_id=row.default_workspace_id if row else None,
        sso_app_changed_at=(row.sso_app_changed_at if row else None) or license.created_at,
        sso_signin_changed_at=(row.sso_signin_changed_at if row else None) or license.created_at,
    )


async def set_default_workspace(
    session: AsyncSession,
    *,
    actor: Actor,
    license_id: uuid.UUID,
    workspace_id: uuid.UUID | None,
    clock: Clock = utcnow,
) -> InnerApiSettingsView:
    await _require_license(session, license_id)
    value = str(workspace_id) if workspace_id is not None else None
    statement = dialect_insert(session, InnerApiLicenseSettings).values(
        license_id=license_id, default_workspace_id=value, updated_at=clock()
    )
    statement = statement.on_conflict_do_update(
        index_elements=["license_id"], set_={"default_workspace_id": value, "updated_at": clock()}
    )
    await session.execute(statement)
    await record_audit(
        session,
        actor=actor,
        action="inner_api.default_workspace_set",
        target_type="license",
        target_id=license_id,
        detail={"workspace_id": value},
        clock=clock,
    )
    await session.commit()
    return await get_settings(session, license_id=license_id)


# -- web apps ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AppAccessView:
    app_id: str
    access_mode: AccessMode
    allowed_users: list[str]


async def access_modes(
    session: AsyncSession, *, license_id: uuid.UUID, app_ids: Iterable[str]
) -> dict[str, AccessMode]:
    """Every requested app's mode; apps never set are ``private``."""
    wanted = list(dict.fromkeys(app_ids))
    stored: dict[str, AccessMode] = {}
    if wanted:
        rows = await session.execute(
            select(AppAccessMode.app_id, AppAccessMode.access_mode).where(
                AppAccessMode.license_id == license_id, AppAccessMode.app_id.in_(wanted)
            )
        )
        stored = {app_id: AccessMode(mode) for app_id, mode in rows.all()}
    return {app_id: stored.get(app_id, DEFAULT_ACCESS_MODE) for app_id in wanted}


async def set_access_mode(
    session: AsyncSession, *, license_id: uuid.UUID, app_id: str, mode: AccessMode, clock: Clock = utcnow
) -> None:
    statement = dialect_insert(session, AppAccessMode).values(
        license_id=license_id, app_id=app_id, access_mode=mode.value, updated_at=clock()
    )
    statement = statement.on_conflict_do_update(
        index_elements=["license_id", "app_id"], set_={"access_mode": mode.value, "updated_at": clock()}
    )
    await session.execute(statement)
    await session.commit()


async def forget_app(session: AsyncSession, *, license_id: uuid.UUID, app_id: str) -> None:
    """An app deleted in Dify: its mode and allow-list go too. Forgetting an unknown app is not an error."""
    await session.execute(
        delete(AppAccessMode).where(AppAccessMode.license_id == license_id, AppAccessMode.app_id == app_id)
    )
    await session.execute(
        delete(AppAllowedUser).where(AppAllowedUser.license_id == license_id, AppAllowedUser.app_id == app_id)
    )
    await session.commit()


async def allow_listed_apps(
    session: AsyncSession, *, license_id: uuid.UUID, user_id: str, app_ids: Iterable[str]
) -> set[str]:
    """Which of these apps have this user on their allow-list."""
    wanted = list(dict.fromkeys(app_ids))
    if not wanted:
        return set()
    rows = await session.scalars(
        select(AppAllowedUser.app_id).where(
            AppAllowedUser.license_id == license_id,
            AppAllowedUser.user_id == user_id,
            AppAllowedUser.app_id.in_(wanted),
        )
    )
    return set(rows.all())


async def get_app_access(session: AsyncSession, *, license_id: uuid.UUID, app_id: str) -> AppAccessView:
    await _require_license(session, license_id)
    modes = await access_modes(session, license_id=license_id, app_ids=[app_id])
    users = await session.scalars(
        select(AppAllowedUser.user_id)
        .where(AppAllowedUser.license_id == license_id, AppAllowedUser.app_id == app_id)
        .order_by(AppAllowedUser.user_id)
    )
    return AppAccessView(app_id, modes[app_id], list(users.all()))


async def admin_set_access_mode(
    session: AsyncSession, *, actor: Actor, license_id: uuid.UUID, app_id: str, mode: AccessMode, clock: Clock = utcnow
) -> AppAccessView:
    await _require_license(session, license_id)
    await record_audit(
        session,
        actor=actor,
        action="inner_api.access_mode_set",
        target_type="license",
        target_id=license_id,
        detail={"app_id": app_id, "access_mode": mode.value},
        clock=clock,
    )
    await set_access_mode(session, license_id=license_id, app_id=app_id, mode=mode, clock=clock)
    return await get_app_access(session, license_id=license_id, app_id=app_id)


async def allow_users(
    session: AsyncSession,
    *,
    actor: Actor,
    license_id: uuid.UUID,
    app_id: str,
    user_ids: list[str],
    clock: Clock = utcnow,
) -> AppAccessView:
    """Add users to a private app's allow-list (adding one already there changes nothing)."""
    await _require_license(session, license_id)
    users = list(dict.fromkeys(user_ids))
    if users:
        statement = dialect_insert(session, AppAllowedUser).values(
            [{"license_id": license_id, "app_id": app_id, "user_id": user, "added_at": clock()} for user in users]
        )
        await session.execute(statement.on_conflict_do_nothing())
    await record_audit(
        session,
        actor=actor,
        action="inner_api.app_users_allowed",
        target_type="license",
        target_id=license_id,
        detail={"app_id": app_id, "user_ids": users},
        clock=clock,
    )
    await session.commit()
    return await get_app_access(session, license_id=license_id, app_id=app_id)


async def disallow_user(
    session: AsyncSession, *, actor: Actor, license_id: uuid.UUID, app_id: str, user_id: str, clock: Clock = utcnow
) -> AppAccessView:
    await _require_license(session, license_id)
    await session.execute(
        delete(AppAllowedUser).where(
            AppAllowedUser.license_id == license_id, AppAllowedUser.app_id == app_id, AppAllowedUser.user_id == user_id
        )
    )
    await record_audit(
        session,
        actor=actor,
        action="inner_api.app_user_disallowed",
        target_type="license",
        target_id=license_id,
        detail={"app_id": app_id, "user_id": user_id},
        clock=clock,
    )
    await session.commit()
    return await get_app_access(session, license_id=license_id, app_id=app_id)
