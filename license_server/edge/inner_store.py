"""The edge's side of the inner-API service (``inner_api.service``): its ``InnerApiStore`` and ``InnerApiRecords``.

- Terms come from the file's signed claims (``terms_from_claims``); the status is the one the edge computes for
  every request (``edge_license_state``: the one status function, trusted time, clock rollback included).
- Usage is the newest report the local product posted to ``/v1/usage``.
- SSO change times are when the current switch values took effect on this edge (see ``_record_sso_switches``).
- Credentials are checked by SHA-256 and hold no seat: an edge serves one install per license file.
- Overrides, access modes, allow-lists, the default workspace and its joins are edge-local (``inner_models``), in the
  shapes and through the SQL the vendor uses (``ScopedInnerApiRecords``), with no license column.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.clock import Clock, utcnow
from license_server.edge.inner_models import (
    EdgeAppAccessMode,
    EdgeAppAllowedUser,
    EdgeDefaultWorkspaceMember,
    EdgeInnerCredential,
    EdgeInnerSettings,
    EdgeSsoSwitches,
    EdgeWorkspacePolicy,
)
from license_server.edge.runtime import EdgeLicenseState, EdgeRuntime, edge_license_state
from license_server.edge.store import CURRENT_FIRST, EdgeUsage
from license_server.errors import InvalidInnerApiSecret
from license_server.inner_api.mapping import terms_from_claims, workspace_member_counts
from license_server.inner_api.store import (
    MAX_SECRET_LENGTH,
    Caller,
    InfoBodyCache,
    InnerApiTables,
    LicenseState,
    ScopedInnerApiRecords,
    SSOChangeTimes,
)
from license_server.licenses.sso_changes import app_sso_switches, signin_sso_switches
from license_server.licenses.terms import LicenseTerms
from license_server.licenses.usage import UsageSummary
from license_server.lifecycle.observer import parse_timestamp
from license_server.lifecycle.status import Status

NO_CLAIMED_ID = uuid.UUID(int=0)
SETTINGS_ROW = 1  # edge_inner_settings holds one row
EDGE_TABLES = InnerApiTables(
    workspace_policies=EdgeWorkspacePolicy,
    access_modes=EdgeAppAccessMode,
    allowed_users=EdgeAppAllowedUser,
    default_workspace_members=EdgeDefaultWorkspaceMember,
)


def secret_digest(secret: str) -> str:
    """SHA-256 of the secret. Unkeyed on purpose: the edge has no server key, and a 256-bit random secret cannot
    be guessed from its digest (unlike a password), so a copy of edge.db does not reveal a usable secret."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class EdgeInnerApiRecords(ScopedInnerApiRecords):
    """The install's records in the edge's SQLite file (the edge CLI's and the running edge's). Nothing is audited:
    the edge has no admin API, and its operator is the one person who changes these."""

    def __init__(self, session: AsyncSession, *, clock: Clock = utcnow) -> None:
        super().__init__(session, tables=EDGE_TABLES, scope={}, clock=clock)

    @property
    def owner(self) -> str:
        return "this edge"

    async def audit(self, action: str, detail: dict[str, Any]) -> None:
        """Nothing to record: see the class."""

    async def add_credential(self, *, secret: str, hint: str, label: str) -> EdgeInnerCredential:
        credential = EdgeInnerCredential(
            id=str(uuid.uuid4()),
            secret_hash=secret_digest(secret),
            secret_hint=hint,
            label=label,
            created_at=self._clock(),
            revoked_at=None,
        )
        self.session.add(credential)
        return credential

    async def credentials(self) -> Sequence[EdgeInnerCredential]:
        rows = await self.session.scalars(
            select(EdgeInnerCredential).order_by(EdgeInnerCredential.created_at, EdgeInnerCredential.id)
        )
        return rows.all()

    async def credential(self, credential_id: str) -> EdgeInnerCredential | None:
        return await self.session.get(EdgeInnerCredential, credential_id)

    async def revoke_credential(self, credential_id: str) -> None:
        """Calls with it are 401 from the next one: the running edge looks every secret up (no cache)."""
        credential = await self.session.get(EdgeInnerCredential, credential_id)
        assert credential is not None  # the service looked it up in this transaction
        credential.revoked_at = self._clock()

    async def default_workspace(self) -> str | None:
        row = await self.session.get(EdgeInnerSettings, SETTINGS_ROW, populate_existing=True)
        return row.default_workspace_id if row else None

    async def put_default_workspace(self, workspace_id: str | None) -> None:
        statement = insert(EdgeInnerSettings).values(id=SETTINGS_ROW, default_workspace_id=workspace_id)
        await self.session.execute(
            statement.on_conflict_do_update(index_elements=["id"], set_={"default_workspace_id": workspace_id})
        )


@dataclass(frozen=True)
class _FileTerms:
    """What one verified file says, parsed once per file (keyed by its ETag)."""

    etag: str
    terms: LicenseTerms
    expires_at: datetime
    readable: bool


def _file_terms(state: EdgeLicenseState) -> _FileTerms:
    try:
        return _FileTerms(
            state.etag, terms_from_claims(state.claims), parse_timestamp(state.claims["expires_at"]), True
        )
    except (KeyError, TypeError, ValueError):  # signed, but not terms this version can read: the vendor's bug
        return _FileTerms(state.etag, LicenseTerms(), datetime(1970, 1, 1, tzinfo=UTC), False)


def _served_status(state: EdgeLicenseState, file: _FileTerms) -> Status:
    """The computed status, except that an unreadable file never reads as ``none``.

    The edge only ever serves a verified file, so ``none`` (no license at all) would be wrong, and Dify lets
    ``none`` through; a file whose dates or terms cannot be read is a license the edge cannot honour: ``inactive``,
    which logs Dify's users out.
    """
    status = state.status.status
    if status is Status.NONE or not file.readable:
        return Status.INACTIVE
    return status


class EdgeInnerApiStore:
    def __init__(self, edge: EdgeRuntime) -> None:
        self._edge = edge
        self.info_bodies = InfoBodyCache(max_entries=4)
        self._file: _FileTerms | None = None
        self._version: tuple[tuple[str, int], object] | None = None
        self._sso_recorded_for: str | None = None

    def _terms_of(self, state: EdgeLicenseState) -> _FileTerms:
        if self._file is None or self._file.etag != state.etag:
            self._file = _file_terms(state)
        return self._file

    def _license_id(self) -> uuid.UUID:
        try:
            return uuid.UUID(str(self._edge.license_file.claims.get("license_id")))
        except ValueError:
            return NO_CLAIMED_ID

    # -- authentication and the license ------------------------------------------------------------------------
    async def authenticate(self, secret: str | None, *, address: str | None = None) -> Caller:
        # No guessing limiter on the edge: it serves one customer's own network, and its secrets are 256 random bits.
        if not secret or len(secret) > MAX_SECRET_LENGTH:
            raise InvalidInnerApiSecret("send the Enterprise-Api-Secret-Key header with an inner-API secret")
        digest = secret_digest(secret)
        async with self._edge.session_factory() as session:
            credential_id = await session.scalar(
                select(EdgeInnerCredential.id).where(
                    EdgeInnerCredential.secret_hash == digest, EdgeInnerCredential.revoked_at.is_(None)
                )
            )
        if credential_id is None:
            raise InvalidInnerApiSecret("the Enterprise-Api-Secret-Key is unknown or revoked on this edge")
        return Caller(license_id=self._license_id(), credential_id=uuid.UUID(credential_id))

    async def license_state(self, caller: Caller) -> LicenseState:
        state = await edge_license_state(self._edge)
        file = self._terms_of(state)
        await self._record_sso_switches(state, file)
        async with self._edge.session_factory() as session:
            latest = (
                await session.execute(
                    select(EdgeUsage.id, EdgeUsage.workspace_count, EdgeUsage.max_members, EdgeUsage.seats_used)
                    .order_by(*CURRENT_FIRST)
                    .limit(1)
                )
            ).first()
        usage = UsageSummary(*latest[1:], reported=True) if latest else UsageSummary()
        key = (state.etag, latest[0] if latest else 0)
        if self._version is None or self._version[0] != key:
            self._version = (key, object())  # a new identity: the cached /info body is rebuilt once
        return LicenseState(file.terms, file.expires_at, _served_status(state, file), usage, self._version[1])

    async def _record_sso_switches(self, state: EdgeLicenseState, file: _FileTerms) -> None:
        """Stamp the time a file with different SSO switches is first served here.

        That is when the change took effect for this install: web-app sessions issued before it were issued under
        the old switches, whenever the vendor made the change. Checked once per file (ETag), in one upsert per kind
        that moves the time only when the switches differ from the stored ones.
        """
        if self._sso_recorded_for == state.etag:
            return
        # Never earlier than the trusted-time mark: a file swapped in while the clock is set back takes effect now.
        changed_at = max(state.checked_at, datetime.fromtimestamp(self._edge.trusted.mark, UTC))
        switches = {"app": app_sso_switches(file.terms), "signin": signin_sso_switches(file.terms)}
        async with self._edge.session_factory() as session:
            for kind, values in switches.items():
                encoded = json.dumps([str(v) if not isinstance(v, bool) else v for v in values])
                statement = insert(EdgeSsoSwitches).values(kind=kind, switches=encoded, changed_at=changed_at)
                await session.execute(
                    statement.on_conflict_do_update(
                        index_elements=["kind"],
                        set_={"switches": encoded, "changed_at": changed_at},
                        where=EdgeSsoSwitches.switches != statement.excluded.switches,
                    )
                )
            await session.commit()
        self._sso_recorded_for = state.etag

    async def sso_change_times(self, caller: Caller) -> SSOChangeTimes:
        state = await edge_license_state(self._edge)
        await self._record_sso_switches(state, self._terms_of(state))
        async with self._edge.session_factory() as session:
            rows = {row.kind: row.changed_at for row in await session.scalars(select(EdgeSsoSwitches))}
        return SSOChangeTimes(app=rows["app"], signin=rows["signin"])

    async def workspace_members(self, caller: Caller, workspace_id: str) -> int:
        async with self._edge.session_factory() as session:
            workspaces: Any = await session.scalar(select(EdgeUsage.workspaces).order_by(*CURRENT_FIRST).limit(1))
        return workspace_member_counts([workspaces or []]).get(workspace_id, 0)

    @asynccontextmanager
    async def records(self, caller: Caller, *, write: bool = False) -> AsyncIterator[EdgeInnerApiRecords]:
        async with self._edge.session_factory() as session:
            yield EdgeInnerApiRecords(session, clock=self._edge.clock)
