"""The edge's ``InnerApiStore``: Dify's inner API answered from the verified license file and the edge's SQLite file.

- Terms come from the file's signed claims (``terms_from_claims``); the status is the one the edge computes for
  every request (``edge_license_state``: the one status function, trusted time, clock rollback included).
- Usage is the newest report the local product posted to ``/v1/usage``.
- SSO change times are when the current switch values took effect on this edge (see ``_record_sso_switches``).
- Overrides, access modes, allow-lists, the default workspace and its joins are edge-local (``inner_models``).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.sqlite import insert

from license_server.edge import inner_service
from license_server.edge.inner_models import (
    EdgeDefaultWorkspaceMember,
    EdgeInnerCredential,
    EdgeSsoSwitches,
    EdgeWorkspacePolicy,
)
from license_server.edge.runtime import EdgeLicenseState, EdgeRuntime, edge_license_state
from license_server.edge.store import CURRENT_FIRST, EdgeUsage
from license_server.errors import InvalidInnerApiSecret
from license_server.inner_api.mapping import AccessMode, terms_from_claims
from license_server.inner_api.store import MAX_SECRET_LENGTH, Caller, InfoBodyCache, LicenseState, SSOChangeTimes
from license_server.licenses.sso_changes import app_sso_switches, signin_sso_switches
from license_server.licenses.terms import LicenseTerms, WorkspacePolicy
from license_server.licenses.usage import UsageSummary
from license_server.lifecycle.observer import parse_timestamp
from license_server.lifecycle.status import Status

NO_CLAIMED_ID = uuid.UUID(int=0)


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
        digest = inner_service.secret_digest(secret)
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

    # -- workspaces --------------------------------------------------------------------------------------------
    async def workspace_members(self, caller: Caller, workspace_id: str) -> int:
        async with self._edge.session_factory() as session:
            workspaces: Any = await session.scalar(select(EdgeUsage.workspaces).order_by(*CURRENT_FIRST).limit(1))
        for item in workspaces or []:
            if str(item.get("id")) == workspace_id:
                return int(item.get("members", 0))
        return 0

    async def workspace_policy_override(self, caller: Caller, workspace_id: str) -> WorkspacePolicy | None:
        async with self._edge.session_factory() as session:
            row = await session.get(EdgeWorkspacePolicy, workspace_id)
        if row is None:
            return None
        return WorkspacePolicy(
            allow_member_invite=row.allow_member_invite, allow_owner_transfer=row.allow_owner_transfer
        )

    async def default_workspace(self, caller: Caller) -> str | None:
        async with self._edge.session_factory() as session:
            return await inner_service.default_workspace(session)

    async def join_default_workspace(self, caller: Caller, workspace_id: str, account_id: str) -> bool:
        async with self._edge.session_factory() as session:
            statement = insert(EdgeDefaultWorkspaceMember).values(
                workspace_id=workspace_id, account_id=account_id, joined_at=self._edge.clock()
            )
            result = await session.execute(statement.on_conflict_do_nothing())
            await session.commit()
        return bool(result.rowcount)  # type: ignore[attr-defined]

    # -- web apps ----------------------------------------------------------------------------------------------
    async def access_modes(self, caller: Caller, app_ids: list[str]) -> dict[str, AccessMode]:
        async with self._edge.session_factory() as session:
            return await inner_service.access_modes(session, app_ids=app_ids)

    async def set_access_mode(self, caller: Caller, app_id: str, mode: AccessMode) -> None:
        async with self._edge.session_factory() as session:
            await inner_service.set_access_mode(session, app_id=app_id, mode=mode, now=self._edge.clock())

    async def forget_app(self, caller: Caller, app_id: str) -> None:
        async with self._edge.session_factory() as session:
            await inner_service.forget_app(session, app_id=app_id)

    async def allow_listed_apps(self, caller: Caller, user_id: str, app_ids: list[str]) -> set[str]:
        async with self._edge.session_factory() as session:
            return await inner_service.allow_listed_apps(session, user_id=user_id, app_ids=app_ids)
