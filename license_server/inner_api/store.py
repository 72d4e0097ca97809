"""What the inner API's controllers depend on: a small store protocol, and the vendor server's implementation.

The controllers call only ``InnerApiStore``. The vendor server answers from its database through the poll path's
in-process caches (``SqlInnerApiStore``); the edge can answer from a verified license file and its own SQLite file by
implementing the same protocol, without touching the controllers.
"""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from license_server.auth.throttle import CredentialKind, record_failed_auth, refuse_if_guessing
from license_server.db.session import dialect_insert
from license_server.deployments import service as deployments
from license_server.deployments.models import Activation, UsageReport
from license_server.deployments.runtime_state import CheckIn, LicenseSnapshot, LoadingCache

# The poll path's rule, shared: the status as of this call, counting the call itself as a check-in.
from license_server.deployments.service import status_checked_in
from license_server.deployments.usage import select_current_reports, usage_summary
from license_server.errors import (
    InnerApiSeatsInUse,
    InvalidInnerApiSecret,
    LicenseKeyNotFound,
    LicenseNotUsable,
    TooManyActivations,
)
from license_server.inner_api import service
from license_server.inner_api.mapping import AccessMode, info_body
from license_server.inner_api.models import DefaultWorkspaceMember, InnerApiCredential, WorkspacePolicyOverride
from license_server.licenses.models import License
from license_server.licenses.service import license_view
from license_server.licenses.terms import LicenseTerms, WorkspacePolicy
from license_server.licenses.usage import UsageSummary
from license_server.lifecycle.status import Status

if TYPE_CHECKING:
    from license_server.runtime import Runtime


@dataclass(frozen=True)
class Caller:
    """An authenticated inner-API call: which license, through which credential, and the activation the
    credential's Dify install holds its seat with (None while the license cannot be activated, e.g. suspended)."""

    license_id: uuid.UUID
    credential_id: uuid.UUID
    activation_id: uuid.UUID | None = None


@dataclass(frozen=True)
class LicenseState:
    """What ``/info`` and the per-workspace answers are built from."""

    terms: LicenseTerms
    expires_at: datetime
    status: Status
    usage: UsageSummary
    # Changes identity whenever the facts behind terms/usage are reloaded: the /info body is rebuilt only then.
    version: object


@dataclass(frozen=True)
class SSOChangeTimes:
    app: datetime  # web-app SSO switches
    signin: datetime  # console sign-in SSO switches


class InnerApiStore(Protocol):
    info_bodies: InfoBodyCache

    async def authenticate(self, secret: str | None, *, address: str | None = None) -> Caller:
        """The caller for this secret (a check-in for its license), or raise ``InvalidInnerApiSecret``; ``address``
        is the client's, for stores that slow down guessing."""

    async def license_state(self, caller: Caller) -> LicenseState: ...

    async def workspace_members(self, caller: Caller, workspace_id: str) -> int: ...

    async def workspace_policy_override(self, caller: Caller, workspace_id: str) -> WorkspacePolicy | None: ...

    async def access_modes(self, caller: Caller, app_ids: list[str]) -> dict[str, AccessMode]: ...

    async def set_access_mode(self, caller: Caller, app_id: str, mode: AccessMode) -> None: ...

    async def forget_app(self, caller: Caller, app_id: str) -> None: ...

    async def allow_listed_apps(self, caller: Caller, user_id: str, app_ids: list[str]) -> set[str]: ...

    async def default_workspace(self, caller: Caller) -> str | None: ...

    async def join_default_workspace(self, caller: Caller, workspace_id: str, account_id: str) -> bool:
        """Record the join; True if the account was not a member yet."""

    async def sso_change_times(self, caller: Caller) -> SSOChangeTimes: ...


class InfoBodyCache:
    """The serialised ``/info`` body per license, rebuilt only when its state's version or status changes."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._entries: OrderedDict[uuid.UUID, tuple[object, Status, bytes]] = OrderedDict()
        self._max = max_entries

    def body(self, license_id: uuid.UUID, state: LicenseState) -> bytes:
        cached = self._entries.get(license_id)
        if cached is not None and cached[0] is state.version and cached[1] is state.status:
            return cached[2]
        body = json.dumps(
            info_body(terms=state.terms, expires_at=state.expires_at, status=state.status, usage=state.usage),
            separators=(",", ":"),
        ).encode()
        self._entries[license_id] = (state.version, state.status, body)
        self._entries.move_to_end(license_id)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return body


MAX_SECRET_LENGTH = 256


class SqlInnerApiStore:
    """The vendor server's store: the license through the poll path's caches, the rest from the database."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        ttl = runtime.settings.poll_cache_seconds
        self._callers: LoadingCache[str, Caller] = LoadingCache(ttl)
        self._workspace_members: LoadingCache[uuid.UUID, dict[str, int]] = LoadingCache(ttl)
        self.info_bodies = InfoBodyCache()

    def forget_credentials(self) -> None:
        """After a revocation: the revoked secret must stop working in this process at once."""
        self._callers.clear()

    # -- authentication and the license ------------------------------------------------------------------------
    async def authenticate(self, secret: str | None, *, address: str | None = None) -> Caller:
        # Different wrong secrets count against the address (for this kind of credential only): guessing secrets
        # hits 429 after a few dozen tries.
        limiter_key = refuse_if_guessing(self._runtime, address, CredentialKind.INNER_API_SECRET)
        try:
            return await self._authenticate(secret)
        except InvalidInnerApiSecret:
            record_failed_auth(self._runtime, limiter_key, secret)
            raise

    async def _authenticate(self, secret: str | None) -> Caller:
        if not secret or len(secret) > MAX_SECRET_LENGTH:
            raise InvalidInnerApiSecret("send the Enterprise-Api-Secret-Key header with an inner-API secret")
        digest = self._runtime.hasher.digest(secret)  # one HMAC and one indexed lookup, known secret or not

        async def load() -> Caller:
            async with self._runtime.session_factory() as session:
                row = (
                    await session.execute(
                        select(InnerApiCredential.id, InnerApiCredential.license_id, InnerApiCredential.label).where(
                            InnerApiCredential.secret_hash == digest, InnerApiCredential.revoked_at.is_(None)
                        )
                    )
                ).first()
            if row is None:
                raise InvalidInnerApiSecret("the Enterprise-Api-Secret-Key is unknown or revoked")
            activation_id = await self._bind_install(row.license_id, row.id, row.label)
            return Caller(license_id=row.license_id, credential_id=row.id, activation_id=activation_id)

        caller = await self._callers.get(digest, load)
        now = self._runtime.clock()
        snapshot = await self._snapshot(caller.license_id)
        heartbeat_seconds = int(snapshot.view.terms.heartbeat_window.total_seconds())
        if caller.activation_id is not None:  # the install's seat: its activation and the license check in
            check_in = CheckIn(caller.license_id, now, heartbeat_seconds)
            self._runtime.poll_state.check_ins.record(caller.activation_id, check_in)
        else:
            check_in = CheckIn(caller.license_id, now, heartbeat_seconds, activation=False)
            self._runtime.poll_state.check_ins.record(caller.credential_id, check_in)
        return caller

    async def _bind_install(self, license_id: uuid.UUID, credential_id: uuid.UUID, label: str) -> uuid.UUID | None:
        """The live activation this credential's install holds, taking a seat on its first use (or after an admin
        freed it). Raises ``InnerApiSeatsInUse`` when no seat is free; None when the license cannot be activated now
        (revoked, suspended, not started, expired): its status answers Dify, and no seat is needed to say so."""
        fingerprint = service.install_fingerprint(credential_id)
        for _ in range(2):
            async with self._runtime.session_factory() as session:
                bound = await session.scalar(
                    select(Activation.id).where(
                        Activation.license_id == license_id,
                        Activation.fingerprint == fingerprint,
                        Activation.deactivated_at.is_(None),
                    )
                )
                key_digest = await session.scalar(select(License.key_hash).where(License.id == license_id))
            if bound is not None:
                return bound
            if key_digest is None:  # credentials cascade with their license; this is a race with a deletion
                raise InvalidInnerApiSecret("the Enterprise-Api-Secret-Key is unknown or revoked")
            try:
                activation = await deployments.activate_license_install(
                    self._runtime,
                    key_digest=key_digest,
                    fingerprint=fingerprint,
                    activated_by="inner_api",
                    hostname=label or None,
                    metadata={"inner_api_credential_id": str(credential_id)},
                )
            except TooManyActivations as exc:
                raise InnerApiSeatsInUse(
                    "every activation of this license is in use: this Dify install needs a free seat "
                    "(raise max_activations, or revoke the credential of an install no longer used)"
                ) from exc
            except LicenseNotUsable:
                return None
            except LicenseKeyNotFound:  # the license key was rotated between the read and the activation
                continue
            return activation.id
        return None

    async def _snapshot(self, license_id: uuid.UUID) -> LicenseSnapshot:
        """The poll path's cached snapshot of the license (shared with polls; at most poll_cache_seconds old)."""

        async def load() -> LicenseSnapshot:
            async with self._runtime.session_factory() as session:
                license = await session.scalar(
                    select(License)
                    .where(License.id == license_id)
                    .options(selectinload(License.customer), selectinload(License.plan))
                )
                if license is None:  # credentials cascade with their license; this is a race with a deletion
                    raise InvalidInnerApiSecret("the Enterprise-Api-Secret-Key is unknown or revoked")
                view = license_view(license, self._runtime.clock())
                return LicenseSnapshot(view=view, usage=await usage_summary(session, license_id))

        return await self._runtime.poll_state.licenses.get(license_id, load)

    async def license_state(self, caller: Caller) -> LicenseState:
        snapshot = await self._snapshot(caller.license_id)
        view = snapshot.view
        status = status_checked_in(view, self._runtime.clock())
        return LicenseState(view.terms, view.license.expires_at, status.status, snapshot.usage, snapshot)

    # -- workspaces --------------------------------------------------------------------------------------------
    async def workspace_members(self, caller: Caller, workspace_id: str) -> int:
        async def load() -> dict[str, int]:
            current = select_current_reports(caller.license_id, UsageReport.workspaces)
            async with self._runtime.session_factory() as session:
                reports = await session.scalars(current)
                members: dict[str, int] = {}
                for workspaces in reports.all():
                    for item in workspaces:
                        key = str(item.get("id", ""))
                        members[key] = max(members.get(key, 0), int(item.get("members", 0)))
            return members

        members = await self._workspace_members.get(caller.license_id, load)
        return members.get(workspace_id, 0)

    async def workspace_policy_override(self, caller: Caller, workspace_id: str) -> WorkspacePolicy | None:
        async with self._runtime.session_factory() as session:
            row = await session.get(WorkspacePolicyOverride, (caller.license_id, workspace_id))
        if row is None:
            return None
        return WorkspacePolicy(
            allow_member_invite=row.allow_member_invite, allow_owner_transfer=row.allow_owner_transfer
        )

    async def default_workspace(self, caller: Caller) -> str | None:
        async with self._runtime.session_factory() as session:
            settings = await service.get_settings(session, license_id=caller.license_id)
        return settings.default_workspace_id

    async def join_default_workspace(self, caller: Caller, workspace_id: str, account_id: str) -> bool:
        async with self._runtime.session_factory() as session, self._runtime.write_gate:
            statement = dialect_insert(session, DefaultWorkspaceMember).values(
                license_id=caller.license_id,
                workspace_id=workspace_id,
                account_id=account_id,
                joined_at=self._runtime.clock(),
            )
            result = await session.execute(statement.on_conflict_do_nothing())
            await session.commit()
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def sso_change_times(self, caller: Caller) -> SSOChangeTimes:
        async with self._runtime.session_factory() as session:
            settings = await service.get_settings(session, license_id=caller.license_id)
        return SSOChangeTimes(app=settings.sso_app_changed_at, signin=settings.sso_signin_changed_at)

    # -- web apps ----------------------------------------------------------------------------------------------
    async def access_modes(self, caller: Caller, app_ids: list[str]) -> dict[str, AccessMode]:
        async with self._runtime.session_factory() as session:
            return await service.access_modes(session, license_id=caller.license_id, app_ids=app_ids)

    async def set_access_mode(self, caller: Caller, app_id: str, mode: AccessMode) -> None:
        async with self._runtime.session_factory() as session, self._runtime.write_gate:
            await service.set_access_mode(
                session, license_id=caller.license_id, app_id=app_id, mode=mode, clock=self._runtime.clock
            )

    async def forget_app(self, caller: Caller, app_id: str) -> None:
        async with self._runtime.session_factory() as session, self._runtime.write_gate:
            await service.forget_app(session, license_id=caller.license_id, app_id=app_id)

    async def allow_listed_apps(self, caller: Caller, user_id: str, app_ids: Iterable[str]) -> set[str]:
        async with self._runtime.session_factory() as session:
            return await service.allow_listed_apps(
                session, license_id=caller.license_id, user_id=user_id, app_ids=app_ids
            )
