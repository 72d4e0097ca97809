"""The inner API (``/inner/api``, what Dify calls) and its admin routes. Thin: parse, call the service, serialise."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

from litestar import Controller, MediaType, Request, Response, delete, get, post, put
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response.base import ASGIResponse

from license_server.auth.guards import CurrentActor, needs
from license_server.auth.tokens import Permission
from license_server.dependencies import Db, RuntimeDep
from license_server.inner_api import service
from license_server.inner_api.mapping import AccessMode
from license_server.inner_api.models import InnerApiCredential, WorkspacePolicyColumns
from license_server.inner_api.schemas import (
    ID_PATTERN,
    AccessModeBatchIn,
    AccessModeIn,
    AccessModeSet,
    AllowedUsersIn,
    AppAccessOut,
    CredentialCreate,
    CredentialCreated,
    CredentialOut,
    DefaultWorkspaceIn,
    DefaultWorkspaceJoinIn,
    InnerApiSettingsOut,
    PermissionBatchIn,
    WorkspacePolicyCleared,
    WorkspacePolicyIn,
    WorkspacePolicyOut,
)
from license_server.inner_api.store import (
    Caller,
    InnerApiSettingsView,
    InnerApiStore,
    SqlInnerApiStore,
    VendorInnerApiRecords,
    get_settings,
    license_records,
)
from license_server.schemas_common import problem_spec

INNER_API_PREFIX = "/inner/api"
SECRET_HEADER = "Enterprise-Api-Secret-Key"  # noqa: S105 - the header's name, not a secret
STORE_STATE_KEY = "inner_store"  # an app serving the inner API puts its InnerApiStore in app.state under this key
AppIdQuery = Annotated[str, QueryParameter(name="appId", pattern=ID_PATTERN)]
UserIdQuery = Annotated[str, QueryParameter(name="userId", pattern=ID_PATTERN)]
_INNER_ERRORS = {
    401: problem_spec("Missing, unknown or revoked Enterprise-Api-Secret-Key (the body has `message`)"),
    403: problem_spec("A new Dify install (credential) finds every seat of the license taken: `too_many_activations`"),
}


def _json(value: Any) -> Response[bytes]:
    return Response(json.dumps(value, separators=(",", ":")).encode(), media_type=MediaType.JSON)


_SECRET_HEADER_KEY = SECRET_HEADER.lower().encode("latin-1")


def _store(connection: ASGIConnection[Any, Any, Any, Any]) -> InnerApiStore:
    store: InnerApiStore = connection.app.state[STORE_STATE_KEY]
    return store


def _secret(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The raw header value, read from the ASGI scope (cheaper than building the headers object on the hot path)."""
    for name, value in connection.scope["headers"]:
        if name == _SECRET_HEADER_KEY:
            return bytes(value).decode("latin-1")
    return None


def _address(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    return connection.client.host if connection.client else None


async def authenticate_secret(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """The guard of the inner-API routes that take input: it runs before the body and query are read, so a bad
    secret is 401 whatever the input. (``/info`` takes none and authenticates in its handler: a guard costs a copy of
    the route handler per request, which the hottest route does without.)"""
    connection.state.inner_caller = await _store(connection).authenticate(
        _secret(connection), address=_address(connection)
    )


def _caller(request: Request[Any, Any, Any]) -> tuple[Caller, InnerApiStore]:
    caller: Caller = request.state.inner_caller
    return caller, _store(request)


class InnerApiController(Controller):
    """Dify's enterprise inner API. Mount it on any app whose ``state.inner_store`` is an ``InnerApiStore``."""

    path = INNER_API_PREFIX
    tags = ["inner-api (Dify)"]

    @get(
        "/info",
        summary="License, SSO, login, branding and plugin policy, as Dify reads them",
        responses={
            200: ResponseSpec(dict[str, Any], description="The /info object (docs/inner-api.md)"),
            **_INNER_ERRORS,
        },
    )
    async def info(self, request: Request[Any, Any, Any]) -> ASGIResponse:
        inner_store = _store(request)
        caller = await inner_store.authenticate(_secret(request), address=_address(request))
        # The body is already serialised (and cached); an ASGI response skips Litestar's response conversion.
        return ASGIResponse(body=await service.info(inner_store, caller), media_type=MediaType.JSON)

    @get(
        "/workspace/{tenant_id:str}/info",
        summary="Members limit and use of one workspace",
        responses=_INNER_ERRORS,
        guards=[authenticate_secret],
    )
    async def workspace_info(self, request: Request[Any, Any, Any], tenant_id: FromPath[str]) -> dict[str, Any]:
        caller, inner_store = _caller(request)
        return await service.workspace_info(inner_store, caller, workspace_id=tenant_id)

    @get(
        "/workspaces/{workspace_id:str}/permission",
        summary="Whether members may invite and owners transfer in this workspace",
        responses=_INNER_ERRORS,
        guards=[authenticate_secret],
    )
    async def workspace_permission(
        self, request: Request[Any, Any, Any], workspace_id: FromPath[str]
    ) -> dict[str, Any]:
        caller, inner_store = _caller(request)
        return await service.workspace_permission(inner_store, caller, workspace_id=workspace_id)

    @get(
        "/sso/app/last-update-time",
        summary="When the web-app SSO switches last changed",
        responses=_INNER_ERRORS,
        guards=[authenticate_secret],
    )
    async def sso_app_changed(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        caller, inner_store = _caller(request)
        return _json(await service.sso_app_changed_at(inner_store, caller))

    @get(
        "/sso/workspace/last-update-time",
        summary="When the sign-in SSO switches last changed",
        responses=_INNER_ERRORS,
        guards=[authenticate_secret],
    )
    async def sso_signin_changed(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        caller, inner_store = _caller(request)
        return _json(await service.sso_signin_changed_at(inner_store, caller))

    @get(
        "/webapp/permission",
        summary="May this user open this web app?",
        responses=_INNER_ERRORS,
        guards=[authenticate_secret],
    )
    async def webapp_permission(
        self, request: Request[Any, Any, Any], user_id: UserIdQuery, app_id: AppIdQuery
    ) -> dict[str, bool]:
        caller, inner_store = _caller(request)
        return {"result": await service.webapp_permission(inner_store, caller, user_id=user_id, app_id=app_id)}

    @post(
        "/webapp/permission/batch",
        status_code=200,
        summary="May this user open these web apps?",
        responses=_INNER_ERRORS,
        guards=[authenticate_secret],
    )
    async def webapp_permission_batch(
        self, request: Request[Any, Any, Any], data: JSONBody[PermissionBatchIn]
    ) -> dict[str, dict[str, bool]]:
        caller, inner_store = _caller(request)
        permissions = await service.webapp_permissions(inner_store, caller, user_id=data.user_id, app_ids=data.app_ids)
        return {"permissions": permissions}

    @get(
        "/webapp/access-mode/id",
        summary="A web app's access mode (private unless set)",
        responses=_INNER_ERRORS,
        guards=[authenticate_secret],
    )
    async def access_mode(self, request: Request[Any, Any, Any], app_id: AppIdQuery) -> dict[str, str]:
        caller, inner_store = _caller(request)
        modes = await service.app_access_modes(inner_store, caller, app_ids=[app_id])
        return {"accessMode": modes[app_id].value}

    @post(
        "/webapp/access-mode/batch/id",
        status_code=200,
        summary="Access modes of web apps",
        responses=_INNER_ERRORS,
        guards=[authenticate_secret],
    )
    async def access_mode_batch(
        self, request: Request[Any, Any, Any], data: JSONBody[AccessModeBatchIn]
    ) -> dict[str, dict[str, str]]:
        caller, inner_store = _caller(request)
        modes = await service.app_access_modes(inner_store, caller, app_ids=data.app_ids)
        return {"accessModes": {app_id: mode.value for app_id, mode in modes.items()}}

    @post(
        "/webapp/access-mode",
        status_code=200,
        summary="Set a web app's access mode",
        responses=_INNER_ERRORS,
        guards=[authenticate_secret],
    )
    async def set_access_mode(self, request: Request[Any, Any, Any], data: JSONBody[AccessModeIn]) -> dict[str, bool]:
        caller, inner_store = _caller(request)
        await service.set_app_access_mode(inner_store, caller, app_id=data.app_id, mode=AccessMode(data.access_mode))
        return {"result": True}

    @delete(
        "/webapp/clean",
        status_code=200,
        summary="Forget a deleted web app (its mode and allow-list); forgetting an unknown app succeeds",
        responses=_INNER_ERRORS,
        guards=[authenticate_secret],
    )
    async def clean(self, request: Request[Any, Any, Any], app_id: AppIdQuery) -> dict[str, bool]:
        caller, inner_store = _caller(request)
        await service.forget_app(inner_store, caller, app_id=app_id)
        return {"result": True}

    @post(
        "/default-workspace/members",
        status_code=200,
        summary="Add an account to the license's default workspace (idempotent)",
        responses=_INNER_ERRORS,
        guards=[authenticate_secret],
    )
    async def join_default_workspace(
        self, request: Request[Any, Any, Any], data: JSONBody[DefaultWorkspaceJoinIn]
    ) -> dict[str, Any]:
        caller, inner_store = _caller(request)
        return await service.join_default_workspace(inner_store, caller, account_id=data.account_id)


# -- admin ------------------------------------------------------------------------------------------------------
def credential_out(credential: InnerApiCredential) -> CredentialOut:
    return CredentialOut(
        id=credential.id,
        license_id=credential.license_id,
        label=credential.label,
        hint=credential.secret_hint,
        created_at=credential.created_at,
        created_by=credential.created_by,
        revoked_at=credential.revoked_at,
    )


def policy_out(row: WorkspacePolicyColumns) -> WorkspacePolicyOut:
    return WorkspacePolicyOut(
        workspace_id=row.workspace_id,
        allow_member_invite=row.allow_member_invite,
        allow_owner_transfer=row.allow_owner_transfer,
        updated_at=row.updated_at,
    )


def _app_out(view: service.AppAccess) -> AppAccessOut:
    return AppAccessOut(app_id=view.app_id, access_mode=view.access_mode, allowed_users=view.allowed_users)


def settings_out(view: InnerApiSettingsView) -> InnerApiSettingsOut:
    return InnerApiSettingsOut(
        license_id=view.license_id,
        default_workspace_id=view.default_workspace_id,
        sso_app_changed_at=view.sso_app_changed_at,
        sso_signin_changed_at=view.sso_signin_changed_at,
    )


async def _records(
    db: Db, runtime: RuntimeDep, license_id: uuid.UUID, actor: CurrentActor | None = None
) -> VendorInnerApiRecords:
    """The license's records in the request's transaction; changes are audited under the actor."""
    return await license_records(db, license_id=license_id, hasher=runtime.hasher, actor=actor, clock=runtime.clock)


class InnerApiAdminController(Controller):
    """Vendor staff manage a license's inner-API credentials, workspace overrides, default workspace, web apps."""

    path = "/v1/admin/licenses/{license_id:uuid}/inner-api"
    tags = ["inner-api admin"]

    @post(
        "/credentials",
        opt=needs(Permission.MANAGE_LICENSES),
        summary="Create an inner-API credential; the secret is shown only in this response",
    )
    async def create_credential(
        self,
        db: Db,
        actor: CurrentActor,
        runtime: RuntimeDep,
        license_id: FromPath[uuid.UUID],
        data: JSONBody[CredentialCreate | None] = None,
    ) -> CredentialCreated:
        records = await _records(db, runtime, license_id, actor)
        created = await service.create_credential(records, label=data.label if data else "")
        return CredentialCreated(**credential_out(created.credential).model_dump(), secret=created.secret)

    @get("/credentials", opt=needs(Permission.READ), summary="A license's inner-API credentials (never the secrets)")
    async def list_credentials(
        self, db: Db, runtime: RuntimeDep, license_id: FromPath[uuid.UUID]
    ) -> list[CredentialOut]:
        records = await _records(db, runtime, license_id)
        return [credential_out(c) for c in await service.list_credentials(records)]

    @delete(
        "/credentials/{credential_id:uuid}",
        opt=needs(Permission.MANAGE_LICENSES),
        status_code=200,
        summary="Revoke a credential; Dify calls with it get 401 from then on",
    )
    async def revoke_credential(
        self,
        db: Db,
        actor: CurrentActor,
        runtime: RuntimeDep,
        request: Request[Any, Any, Any],
        license_id: FromPath[uuid.UUID],
        credential_id: FromPath[uuid.UUID],
    ) -> CredentialOut:
        records = await _records(db, runtime, license_id, actor)
        credential = await service.revoke_credential(records, credential_id=credential_id)
        store = _store(request)
        if isinstance(store, SqlInnerApiStore):
            store.forget_credentials()  # the revoked secret stops working in this process at once
        return credential_out(credential)

    @get("/", opt=needs(Permission.READ), summary="Default workspace and SSO change times")
    async def settings(self, db: Db, license_id: FromPath[uuid.UUID]) -> InnerApiSettingsOut:
        return settings_out(await get_settings(db, license_id=license_id))

    @put("/default-workspace", opt=needs(Permission.MANAGE_LICENSES), summary="Set or clear the default workspace")
    async def set_default_workspace(
        self,
        db: Db,
        actor: CurrentActor,
        runtime: RuntimeDep,
        license_id: FromPath[uuid.UUID],
        data: JSONBody[DefaultWorkspaceIn],
    ) -> InnerApiSettingsOut:
        records = await _records(db, runtime, license_id, actor)
        await service.set_default_workspace(records, workspace_id=data.workspace_id)
        return settings_out(await get_settings(db, license_id=license_id))

    @get("/workspaces", opt=needs(Permission.READ), summary="Workspaces whose policy overrides the license default")
    async def list_workspace_policies(
        self, db: Db, runtime: RuntimeDep, license_id: FromPath[uuid.UUID]
    ) -> list[WorkspacePolicyOut]:
        records = await _records(db, runtime, license_id)
        return [policy_out(row) for row in await service.list_workspace_policies(records)]

    @put(
        "/workspaces/{workspace_id:str}",
        opt=needs(Permission.MANAGE_LICENSES),
        summary="Override one workspace's policy (member invites, owner transfer)",
    )
    async def set_workspace_policy(
        self,
        db: Db,
        actor: CurrentActor,
        runtime: RuntimeDep,
        license_id: FromPath[uuid.UUID],
        workspace_id: FromPath[str],
        data: JSONBody[WorkspacePolicyIn],
    ) -> WorkspacePolicyOut:
        row = await service.set_workspace_policy(
            await _records(db, runtime, license_id, actor),
            workspace_id=workspace_id,
            allow_member_invite=data.allow_member_invite,
            allow_owner_transfer=data.allow_owner_transfer,
        )
        return policy_out(row)

    @delete(
        "/workspaces/{workspace_id:str}",
        opt=needs(Permission.MANAGE_LICENSES),
        status_code=200,
        summary="Remove a workspace's override: it follows the license default again",
    )
    async def clear_workspace_policy(
        self,
        db: Db,
        actor: CurrentActor,
        runtime: RuntimeDep,
        license_id: FromPath[uuid.UUID],
        workspace_id: FromPath[str],
    ) -> WorkspacePolicyCleared:
        records = await _records(db, runtime, license_id, actor)
        removed = await service.clear_workspace_policy(records, workspace_id=workspace_id)
        return WorkspacePolicyCleared(workspace_id=workspace_id, removed=removed)

    @get("/apps/{app_id:str}", opt=needs(Permission.READ), summary="A web app's access mode and allow-list")
    async def get_app(
        self, db: Db, runtime: RuntimeDep, license_id: FromPath[uuid.UUID], app_id: FromPath[str]
    ) -> AppAccessOut:
        return _app_out(await service.app_access(await _records(db, runtime, license_id), app_id=app_id))

    @put("/apps/{app_id:str}/access-mode", opt=needs(Permission.MANAGE_LICENSES), summary="Set a web app's mode")
    async def set_app_mode(
        self,
        db: Db,
        actor: CurrentActor,
        runtime: RuntimeDep,
        license_id: FromPath[uuid.UUID],
        app_id: FromPath[str],
        data: JSONBody[AccessModeSet],
    ) -> AppAccessOut:
        records = await _records(db, runtime, license_id, actor)
        await service.set_access_mode(records, app_id=app_id, mode=data.access_mode)
        return _app_out(await service.app_access(records, app_id=app_id))

    @post(
        "/apps/{app_id:str}/allowed-users",
        opt=needs(Permission.MANAGE_LICENSES),
        status_code=200,
        summary="Add users to a private web app's allow-list",
    )
    async def allow_users(
        self,
        db: Db,
        actor: CurrentActor,
        runtime: RuntimeDep,
        license_id: FromPath[uuid.UUID],
        app_id: FromPath[str],
        data: JSONBody[AllowedUsersIn],
    ) -> AppAccessOut:
        records = await _records(db, runtime, license_id, actor)
        return _app_out(await service.allow_users(records, app_id=app_id, user_ids=data.user_ids))

    @delete(
        "/apps/{app_id:str}/allowed-users/{user_id:str}",
        opt=needs(Permission.MANAGE_LICENSES),
        status_code=200,
        summary="Remove a user from a web app's allow-list",
    )
    async def disallow_user(
        self,
        db: Db,
        actor: CurrentActor,
        runtime: RuntimeDep,
        license_id: FromPath[uuid.UUID],
        app_id: FromPath[str],
        user_id: FromPath[str],
    ) -> AppAccessOut:
        records = await _records(db, runtime, license_id, actor)
        return _app_out(await service.disallow_user(records, app_id=app_id, user_id=user_id))
