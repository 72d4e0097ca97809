"""What the inner-API service (service.py) depends on, and the vendor server's implementation of it.

Two protocols, because the service needs two things from where it runs:

- ``InnerApiStore``, one per process: how a secret is checked (and, on the vendor, the seat its install holds), where
  the license's terms, status and usage come from, when its SSO switches changed, and ``records`` for a caller.
- ``InnerApiRecords``, one per transaction: one license's credentials, workspace overrides, web-app modes and
  allow-lists and default workspace. The shared shapes are written once here (``ScopedInnerApiRecords``, over the
  ``*Columns`` tables of models.py, scoped to the vendor's license or to the edge's single install).

The vendor server answers from its database through the poll path's in-process caches (``SqlInnerApiStore``,
``VendorInnerApiRecords``); the edge answers from a verified license file and its own SQLite file
(``edge.inner_store``).
"""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from license_server.auth.audit import record_audit
from license_server.auth.hashing import SecretHasher
from license_server.auth.throttle import CredentialKind, record_failed_auth, refuse_if_guessing
from license_server.auth.tokens import Actor
from license_server.clock import Clock, utcnow
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
    LicenseNotFound,
    LicenseNotUsable,
    TooManyActivations,
)
from license_server.events.service import EventType, emit_event
from license_server.inner_api.mapping import info_body, workspace_member_counts
from license_server.inner_api.models import (
    AppAccessMode,
    AppAccessModeColumns,
    AppAllowedUser,
    AppAllowedUserColumns,
    CredentialColumns,
    DefaultWorkspaceMember,
    DefaultWorkspaceMemberColumns,
    InnerApiCredential,
    WorkspacePolicyColumns,
    WorkspacePolicyOverride,
)
from license_server.licenses.models import InnerApiLicenseSettings, License
from license_server.licenses.service import license_view
from license_server.licenses.terms import LicenseTerms, WorkspacePolicy
from license_server.licenses.usage import UsageSummary
from license_server.lifecycle.status import Status

if TYPE_CHECKING:
    from license_server.runtime import Runtime

MAX_SECRET_LENGTH = 256
# Each vendor credential is one Dify install, holding one seat through an activation of this fingerprint
# (docs/inner-api.md "Seats"). The edge serves one install per license file and needs none.
INSTALL_FINGERPRINT_PREFIX = "dify-inner-api:"


def install_fingerprint(credential_id: uuid.UUID) -> str:
    """The fingerprint of the activation a credential's Dify install holds its seat with."""
    return f"{INSTALL_FINGERPRINT_PREFIX}{credential_id}"


@dataclass(frozen=True)
class Caller:
    """An authenticated inner-API call: which license, through which credential, and the activation the
    credential's Dify install holds its seat with (None while the license cannot be activated, e.g. suspended, and
    always on the edge)."""

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


CredentialT_co = TypeVar("CredentialT_co", bound=CredentialColumns, covariant=True)


class InnerApiRecords(Protocol[CredentialT_co]):
    """One license's inner-API records in one transaction; the service commits its writes with ``commit``."""

    @property
    def owner(self) -> str:
        """Whose records these are, for messages: ``license <id>`` or ``this edge``."""

    async def audit(self, action: str, detail: dict[str, Any]) -> None:
        """Record a change made by a person (a no-op where no one is named, or nothing is audited: the edge)."""

    async def commit(self) -> None: ...

    # credentials: how a secret is digested, and what revoking frees, differ
    async def add_credential(self, *, secret: str, hint: str, label: str) -> CredentialT_co: ...
    async def credentials(self) -> Sequence[CredentialT_co]: ...
    async def credential(self, credential_id: str) -> CredentialT_co | None: ...
    async def revoke_credential(self, credential_id: str) -> None:
        """Revoke a live credential (and free what it holds)."""

    # workspaces
    async def workspace_policy(self, workspace_id: str) -> WorkspacePolicyColumns | None: ...
    async def workspace_policies(self) -> Sequence[WorkspacePolicyColumns]: ...
    async def put_workspace_policy(self, workspace_id: str, policy: WorkspacePolicy) -> None: ...
    async def delete_workspace_policy(self, workspace_id: str) -> bool: ...
    async def default_workspace(self) -> str | None: ...
    async def put_default_workspace(self, workspace_id: str | None) -> None: ...
    async def add_default_workspace_member(self, workspace_id: str, account_id: str) -> bool:
        """Record the join; True if the account was not a member yet."""

    # web apps
    async def stored_access_modes(self, app_ids: Sequence[str]) -> dict[str, str]: ...
    async def put_access_mode(self, app_id: str, mode: str) -> None: ...
    async def delete_app(self, app_id: str) -> None: ...
    async def allow_listed_apps(self, user_id: str, app_ids: Sequence[str]) -> set[str]: ...
    async def allowed_users(self, app_id: str) -> list[str]: ...
    async def add_allowed_users(self, app_id: str, user_ids: Sequence[str]) -> None: ...
    async def delete_allowed_user(self, app_id: str, user_id: str) -> None: ...


class InnerApiStore(Protocol):
    """Per process: credentials, the license's facts, usage and SSO change times, and records per caller."""

    info_bodies: InfoBodyCache

    async def authenticate(self, secret: str | None, *, address: str | None = None) -> Caller:
        """The caller for this secret (a check-in for its license), or raise ``InvalidInnerApiSecret``; ``address``
        is the client's, for stores that slow down guessing."""

    async def license_state(self, caller: Caller) -> LicenseState: ...

    async def workspace_members(self, caller: Caller, workspace_id: str) -> int: ...

    async def sso_change_times(self, caller: Caller) -> SSOChangeTimes: ...

    def records(self, caller: Caller, *, write: bool = False) -> AbstractAsyncContextManager[InnerApiRecords[Any]]:
        """The caller's records in a new transaction (``write``: one that will write)."""


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


# -- the records both sides keep in the same shapes ---------------------------------------------------------------
@dataclass(frozen=True)
class InnerApiTables:
    """Where one side keeps the records of the shared shapes."""

    workspace_policies: type[WorkspacePolicyColumns]
    access_modes: type[AppAccessModeColumns]
    allowed_users: type[AppAllowedUserColumns]
    default_workspace_members: type[DefaultWorkspaceMemberColumns]


class ScopedInnerApiRecords:
    """The SQL of the shared shapes, once: every statement is limited to ``scope`` (column → value; the vendor's
    ``license_id``, nothing on the edge, whose whole file is one install) and every row written carries it."""

    def __init__(
        self, session: AsyncSession, *, tables: InnerApiTables, scope: Mapping[str, object], clock: Clock
    ) -> None:
        self.session = session
        self._tables = tables
        self._scope = dict(scope)
        self._clock = clock

    def _in_scope(self, table: type[object]) -> list[Any]:
        return [getattr(table, column) == value for column, value in self._scope.items()]

    async def _upsert(self, table: type[object], keys: dict[str, object], values: dict[str, object]) -> None:
        statement = dialect_insert(self.session, table).values(**self._scope, **keys, **values)
        await self.session.execute(statement.on_conflict_do_update(index_elements=[*self._scope, *keys], set_=values))

    async def commit(self) -> None:
        await self.session.commit()

    # -- workspaces ----------------------------------------------------------------------------------------------
    async def workspace_policy(self, workspace_id: str) -> WorkspacePolicyColumns | None:
        table = self._tables.workspace_policies
        statement = select(table).where(*self._in_scope(table), table.workspace_id == workspace_id)
        row: WorkspacePolicyColumns | None = await self.session.scalar(
            statement.execution_options(populate_existing=True)
        )
        return row

    async def workspace_policies(self) -> Sequence[WorkspacePolicyColumns]:
        table = self._tables.workspace_policies
        rows = await self.session.scalars(select(table).where(*self._in_scope(table)).order_by(table.workspace_id))
        return rows.all()

    async def put_workspace_policy(self, workspace_id: str, policy: WorkspacePolicy) -> None:
        values = {
            "allow_member_invite": policy.allow_member_invite,
            "allow_owner_transfer": policy.allow_owner_transfer,
            "updated_at": self._clock(),
        }
        await self._upsert(self._tables.workspace_policies, {"workspace_id": workspace_id}, values)

    async def delete_workspace_policy(self, workspace_id: str) -> bool:
        table = self._tables.workspace_policies
        result = await self.session.execute(
            delete(table).where(*self._in_scope(table), table.workspace_id == workspace_id)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def add_default_workspace_member(self, workspace_id: str, account_id: str) -> bool:
        statement = dialect_insert(self.session, self._tables.default_workspace_members).values(
            **self._scope, workspace_id=workspace_id, account_id=account_id, joined_at=self._clock()
        )
        result = await self.session.execute(statement.on_conflict_do_nothing())
        return bool(result.rowcount)  # type: ignore[attr-defined]

    # -- web apps ------------------------------------------------------------------------------------------------
    async def stored_access_modes(self, app_ids: Sequence[str]) -> dict[str, str]:
        table = self._tables.access_modes
        rows = await self.session.execute(
            select(table.app_id, table.access_mode).where(*self._in_scope(table), table.app_id.in_(app_ids))
        )
        return {row.app_id: row.access_mode for row in rows}

    async def put_access_mode(self, app_id: str, mode: str) -> None:
        values = {"access_mode": mode, "updated_at": self._clock()}
        await self._upsert(self._tables.access_modes, {"app_id": app_id}, values)

    async def delete_app(self, app_id: str) -> None:
        for table in (self._tables.access_modes, self._tables.allowed_users):
            await self.session.execute(delete(table).where(*self._in_scope(table), table.app_id == app_id))

    async def allow_listed_apps(self, user_id: str, app_ids: Sequence[str]) -> set[str]:
        table = self._tables.allowed_users
        rows = await self.session.scalars(
            select(table.app_id).where(*self._in_scope(table), table.user_id == user_id, table.app_id.in_(app_ids))
        )
        return set(rows.all())

    async def allowed_users(self, app_id: str) -> list[str]:
        table = self._tables.allowed_users
        rows = await self.session.scalars(
            select(table.user_id).where(*self._in_scope(table), table.app_id == app_id).order_by(table.user_id)
        )
        return list(rows.all())

    async def add_allowed_users(self, app_id: str, user_ids: Sequence[str]) -> None:
        now = self._clock()
        rows = [{**self._scope, "app_id": app_id, "user_id": user, "added_at": now} for user in user_ids]
        statement = dialect_insert(self.session, self._tables.allowed_users).values(rows)
        await self.session.execute(statement.on_conflict_do_nothing())

    async def delete_allowed_user(self, app_id: str, user_id: str) -> None:
        table = self._tables.allowed_users
        await self.session.execute(
            delete(table).where(*self._in_scope(table), table.app_id == app_id, table.user_id == user_id)
        )


# -- the vendor server ---------------------------------------------------------------------------------------------
VENDOR_TABLES = InnerApiTables(
    workspace_policies=WorkspacePolicyOverride,
    access_modes=AppAccessMode,
    allowed_users=AppAllowedUser,
    default_workspace_members=DefaultWorkspaceMember,
)


class VendorInnerApiRecords(ScopedInnerApiRecords):
    """One license's records in the vendor's database. Changes made by a named actor are audited; credentials are
    stored as keyed hashes, and revoking one frees the seat its install holds."""

    def __init__(
        self,
        session: AsyncSession,
        *,
        license_id: uuid.UUID,
        hasher: SecretHasher,
        actor: Actor | None = None,
        clock: Clock = utcnow,
    ) -> None:
        super().__init__(session, tables=VENDOR_TABLES, scope={"license_id": license_id}, clock=clock)
        self.license_id = license_id
        self._hasher = hasher
        self._actor = actor

    @property
    def owner(self) -> str:
        return f"license {self.license_id}"

    async def audit(self, action: str, detail: dict[str, Any]) -> None:
        if self._actor is not None:
            await record_audit(
                self.session,
                actor=self._actor,
                action=action,
                target_type="license",
                target_id=self.license_id,
                detail=detail,
                clock=self._clock,
            )

    async def add_credential(self, *, secret: str, hint: str, label: str) -> InnerApiCredential:
        credential = InnerApiCredential(
            id=uuid.uuid4(),
            license_id=self.license_id,
            secret_hash=self._hasher.digest(secret),
            secret_hint=hint,
            label=label,
            created_at=self._clock(),
            created_by=self._actor.name if self._actor else "inner_api",
        )
        self.session.add(credential)
        return credential

    async def credentials(self) -> Sequence[InnerApiCredential]:
        rows = await self.session.scalars(
            select(InnerApiCredential)
            .where(InnerApiCredential.license_id == self.license_id)
            .order_by(InnerApiCredential.created_at, InnerApiCredential.id)
        )
        return rows.all()

    async def credential(self, credential_id: str) -> InnerApiCredential | None:
        try:
            key = uuid.UUID(credential_id)
        except ValueError:
            return None
        credential = await self.session.get(InnerApiCredential, key)
        return credential if credential is not None and credential.license_id == self.license_id else None

    async def revoke_credential(self, credential_id: str) -> None:
        credential = await self.credential(credential_id)
        assert credential is not None  # the service looked it up in this transaction
        now, by = self._clock(), self._actor.name if self._actor else "inner_api"
        credential.revoke(now, by)
        activation = await self.session.scalar(
            select(Activation).where(
                Activation.license_id == self.license_id,
                Activation.fingerprint == install_fingerprint(credential.id),
                Activation.deactivated_at.is_(None),
            )
        )
        if activation is not None:  # the install's seat goes with its credential
            activation.deactivated_at, activation.deactivated_by = now, by
            emit_event(
                self.session,
                type=EventType.ACTIVATION_DEACTIVATED,
                license_id=self.license_id,
                activation_id=activation.id,
                data={"by": by, "credential_id": str(credential.id)},
                clock=self._clock,
            )

    async def default_workspace(self) -> str | None:
        row = await self.session.get(InnerApiLicenseSettings, self.license_id, populate_existing=True)
        return row.default_workspace_id if row else None

    async def put_default_workspace(self, workspace_id: str | None) -> None:
        now = self._clock()
        statement = dialect_insert(self.session, InnerApiLicenseSettings).values(
            license_id=self.license_id, default_workspace_id=workspace_id, updated_at=now
        )
        statement = statement.on_conflict_do_update(
            index_elements=["license_id"], set_={"default_workspace_id": workspace_id, "updated_at": now}
        )
        await self.session.execute(statement)


async def license_records(
    session: AsyncSession,
    *,
    license_id: uuid.UUID,
    hasher: SecretHasher,
    actor: Actor | None = None,
    clock: Clock = utcnow,
) -> VendorInnerApiRecords:
    """A license's records for an admin (API or CLI); ``LicenseNotFound`` if there is no such license."""
    if await session.get(License, license_id) is None:
        raise LicenseNotFound(f"no license with id {license_id}", field="license_id")
    return VendorInnerApiRecords(session, license_id=license_id, hasher=hasher, actor=actor, clock=clock)


@dataclass(frozen=True)
class InnerApiSettingsView:
    license_id: uuid.UUID
    default_workspace_id: str | None
    sso_app_changed_at: datetime
    sso_signin_changed_at: datetime


async def get_settings(session: AsyncSession, *, license_id: uuid.UUID) -> InnerApiSettingsView:
    """The vendor's per-license settings with their defaults: SSO switches unchanged since issue count as changed at
    issue (``changes.record_sso_changes`` stamps each change in the transaction that makes it)."""
    license = await session.get(License, license_id)
    if license is None:
        raise LicenseNotFound(f"no license with id {license_id}", field="license_id")
    row = await session.get(InnerApiLicenseSettings, license_id, populate_existing=True)
    return InnerApiSettingsView(
        license_id=license_id,
        default_workspace_id=row.default_workspace_id if row else None,
        sso_app_changed_at=(row.sso_app_changed_at if row else None) or license.created_at,
        sso_signin_changed_at=(row.sso_signin_changed_at if row else None) or license.created_at,
    )


class SqlInnerApiStore:
    """The vendor server's store: the license through the poll path's caches, the rest from the database."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        ttl = runtime.settings.poll_cache_seconds
        self._callers: LoadingCache[str, Caller] = LoadingCache(ttl, name="inner_api.callers")
        self._workspace_members: LoadingCache[uuid.UUID, dict[str, int]] = LoadingCache(
            ttl, name="inner_api.workspace_members"
        )
        self.info_bodies = InfoBodyCache()

    def forget_credentials(self) -> None:
        """After a revocation: the revoked secret must stop working in this process at once."""
        self._callers.clear()

    @asynccontextmanager
    async def records(self, caller: Caller, *, write: bool = False) -> AsyncIterator[VendorInnerApiRecords]:
        # Calls from Dify are not audited (no person made them); writes take SQLite's one-writer gate.
        async with self._runtime.session_factory() as session:
            records = VendorInnerApiRecords(
                session, license_id=caller.license_id, hasher=self._runtime.hasher, clock=self._runtime.clock
            )
            if write:
                async with self._runtime.write_gate:
                    yield records
            else:
                yield records

    # -- authentication and the license ------------------------------------------------------------------------
    async def authenticate(self, secret: str | None, *, address: str | None = None) -> Caller:
        # Different wrong secrets count against the address (for this kind of credential only): guessing secrets
        # hits 429 after a few dozen tries.
        limiter_key = refuse_if_guessing(self._runtime, address, CredentialKind.INNER_API_SECRET)
        try:
            return await self._authenticate(secret)
        except InvalidInnerApiSecret:
            await record_failed_auth(self._runtime, limiter_key, secret)
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
        fingerprint = install_fingerprint(credential_id)
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

    async def workspace_members(self, caller: Caller, workspace_id: str) -> int:
        """The largest count any live activation's current report gives the workspace (cached like polls)."""

        async def load() -> dict[str, int]:
            current = select_current_reports(caller.license_id, UsageReport.workspaces)
            async with self._runtime.session_factory() as session:
                reports = await session.scalars(current)
                return workspace_member_counts(reports.all())

        members = await self._workspace_members.get(caller.license_id, load)
        return members.get(workspace_id, 0)

    async def sso_change_times(self, caller: Caller) -> SSOChangeTimes:
        async with self._runtime.session_factory() as session:
            settings = await get_settings(session, license_id=caller.license_id)
        return SSOChangeTimes(app=settings.sso_app_changed_at, signin=settings.sso_signin_changed_at)
