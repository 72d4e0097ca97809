"""``edge``: serve (``license-server edge --license-file ...``, as before) and manage the edge's inner API.

The edge has no admin API and no vendor database: the operator manages what Dify's enterprise service keeps with
these commands, against the edge's data directory (safe while the edge runs; changes apply on the next request).

    license-server edge credentials create|list|revoke      the ENTERPRISE_API_SECRET_KEY the local Dify sends
    license-server edge workspaces set|clear|list           workspace policy overrides
    license-server edge apps show|set-mode|allow|disallow   web-app access modes and allow-lists
    license-server edge default-workspace set|clear         the workspace new accounts join
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.cli.common import emit, emit_list, fail, json_option, timestamp_text
from license_server.cli.offline import data_dir_option
from license_server.cli.offline import edge as serve_command

if TYPE_CHECKING:
    from license_server.edge.inner_store import EdgeInnerApiRecords

T = TypeVar("T")


class _EdgeGroup(click.Group):
    """Arguments that do not start with a subcommand's name are the serve command's: ``edge --license-file F``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["serve", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_EdgeGroup)
def edge() -> None:
    """The air-gapped install's local license server: `edge [serve] --license-file F --root-key R`, and the
    management of its Dify inner API (credentials, workspaces, apps, default-workspace)."""


edge.add_command(serve_command, "serve")


def _records(session: AsyncSession) -> EdgeInnerApiRecords:
    """The install's inner-API records in the edge's SQLite file, for the one inner-API service."""
    from license_server.edge.inner_store import EdgeInnerApiRecords

    return EdgeInnerApiRecords(session)


def _run(data_dir: Path, work: Callable[[AsyncSession], Awaitable[T]], *, as_json: bool) -> T:
    """One call against the edge's SQLite file (tables created if missing), domain errors as a clean exit."""
    from license_server.edge import inner_models  # noqa: F401 - declares the inner-API tables on EdgeBase
    from license_server.edge.store import DB_FILE, create_edge_engine, edge_session_factory, prepare
    from license_server.errors import LicenseServerError
    from license_server.offline.install import KEY_FILE

    if not (data_dir / DB_FILE).exists() and not (data_dir / KEY_FILE).exists():
        # A typo must not create a fresh, empty edge database somewhere else.
        fail(
            f"{data_dir} is not an edge data directory: run `license-server offline request` first",
            "not_an_edge",
            as_json=as_json,
        )

    async def main() -> T:
        engine = create_edge_engine(data_dir)
        try:
            await prepare(engine)
            async with edge_session_factory(engine)() as session:
                return await work(session)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except LicenseServerError as exc:
        fail(exc.detail, exc.code, as_json=as_json)


# -- credentials ----------------------------------------------------------------------------------------------------
@edge.group()
def credentials() -> None:
    """The ENTERPRISE_API_SECRET_KEY the local Dify sends (stored as a hash; the secret is shown once)."""


def _credential(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "label": row.label,
        "hint": row.secret_hint,
        "created_at": row.created_at,
        "revoked_at": row.revoked_at,
    }


@credentials.command("create")
@click.option("--label", default="", help="e.g. the Dify deployment it is for.")
@data_dir_option
@json_option
def create_credential(label: str, data_dir: Path, as_json: bool) -> None:
    """Create a credential. The secret is printed once: set it as ENTERPRISE_API_SECRET_KEY."""
    from license_server.inner_api import service

    async def work(session: AsyncSession) -> dict[str, Any]:
        created = await service.create_credential(_records(session), label=label)
        return {**_credential(created.credential), "secret": created.secret}

    payload = _run(data_dir, work, as_json=as_json)
    if as_json:
        emit(payload, as_json=True)
        return
    click.echo(f"credential {payload['id']}")
    click.echo(f"secret (shown once; set it as ENTERPRISE_API_SECRET_KEY): {payload['secret']}")


@credentials.command("list")
@data_dir_option
@json_option
def list_credentials(data_dir: Path, as_json: bool) -> None:
    """The edge's credentials (never their secrets)."""
    from license_server.inner_api import service

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        return [_credential(row) for row in await service.list_credentials(_records(session))]

    rows = _run(data_dir, work, as_json=as_json)

    def line(row: dict[str, Any]) -> str:
        state = f"revoked {timestamp_text(row['revoked_at'])}" if row["revoked_at"] else "active"
        return f"{row['id']}  ...{row['hint']}  {state}  {row['label']}"

    emit_list(rows, as_json=as_json, things="credentials", row=line)


@credentials.command("revoke")
@click.argument("credential_id")
@data_dir_option
@json_option
def revoke_credential(credential_id: str, data_dir: Path, as_json: bool) -> None:
    """Revoke a credential: Dify's calls with it are 401 from the next one."""
    from license_server.inner_api import service

    async def work(session: AsyncSession) -> dict[str, Any]:
        row = await service.revoke_credential(_records(session), credential_id=credential_id)
        return _credential(row)

    emit(_run(data_dir, work, as_json=as_json), as_json=as_json)


# -- workspaces -----------------------------------------------------------------------------------------------------
@edge.group()
def workspaces() -> None:
    """Workspace policy overrides (otherwise the license file's workspace policy applies)."""


def _policy(row: Any) -> dict[str, Any]:
    return {
        "workspace_id": row.workspace_id,
        "allow_member_invite": row.allow_member_invite,
        "allow_owner_transfer": row.allow_owner_transfer,
        "updated_at": row.updated_at,
    }


@workspaces.command("set")
@click.argument("workspace_id")
@click.option("--allow-member-invite/--no-allow-member-invite", required=True)
@click.option("--allow-owner-transfer/--no-allow-owner-transfer", required=True)
@data_dir_option
@json_option
def set_workspace(
    workspace_id: str, allow_member_invite: bool, allow_owner_transfer: bool, data_dir: Path, as_json: bool
) -> None:
    """Override one workspace's policy."""
    from license_server.inner_api import service

    async def work(session: AsyncSession) -> dict[str, Any]:
        row = await service.set_workspace_policy(
            _records(session),
            workspace_id=workspace_id,
            allow_member_invite=allow_member_invite,
            allow_owner_transfer=allow_owner_transfer,
        )
        return _policy(row)

    emit(_run(data_dir, work, as_json=as_json), as_json=as_json)


@workspaces.command("clear")
@click.argument("workspace_id")
@data_dir_option
@json_option
def clear_workspace(workspace_id: str, data_dir: Path, as_json: bool) -> None:
    """Remove a workspace's override: the license file's policy applies again."""
    from license_server.inner_api import service

    async def work(session: AsyncSession) -> bool:
        return await service.clear_workspace_policy(_records(session), workspace_id=workspace_id)

    emit({"workspace_id": workspace_id, "removed": _run(data_dir, work, as_json=as_json)}, as_json=as_json)


@workspaces.command("list")
@data_dir_option
@json_option
def list_workspaces(data_dir: Path, as_json: bool) -> None:
    """The overridden workspaces."""
    from license_server.inner_api import service

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        return [_policy(row) for row in await service.list_workspace_policies(_records(session))]

    rows = _run(data_dir, work, as_json=as_json)
    emit_list(
        rows,
        as_json=as_json,
        things="workspace overrides",
        row=lambda row: (
            f"{row['workspace_id']}  invite={row['allow_member_invite']}  transfer={row['allow_owner_transfer']}"
        ),
    )


# -- web apps -------------------------------------------------------------------------------------------------------
@edge.group()
def apps() -> None:
    """Web-app access modes and the allow-lists of private apps."""


def _app(view: Any) -> dict[str, Any]:
    return {"app_id": view.app_id, "access_mode": view.access_mode.value, "allowed_users": view.allowed_users}


@apps.command("show")
@click.argument("app_id")
@data_dir_option
@json_option
def show_app(app_id: str, data_dir: Path, as_json: bool) -> None:
    """A web app's access mode (private unless set) and allow-list."""
    from license_server.inner_api import service

    async def work(session: AsyncSession) -> dict[str, Any]:
        return _app(await service.app_access(_records(session), app_id=app_id))

    emit(_run(data_dir, work, as_json=as_json), as_json=as_json)


@apps.command("set-mode")
@click.argument("app_id")
@click.argument("mode", type=click.Choice(["public", "private", "private_all", "sso_verified"]))
@data_dir_option
@json_option
def set_app_mode(app_id: str, mode: str, data_dir: Path, as_json: bool) -> None:
    """Set a web app's access mode (sso_verified can only be set here, not by Dify)."""
    from license_server.inner_api import service
    from license_server.inner_api.mapping import AccessMode

    async def work(session: AsyncSession) -> dict[str, Any]:
        records = _records(session)
        await service.set_access_mode(records, app_id=app_id, mode=AccessMode(mode))
        return _app(await service.app_access(records, app_id=app_id))

    emit(_run(data_dir, work, as_json=as_json), as_json=as_json)


@apps.command("allow")
@click.argument("app_id")
@click.argument("user_ids", nargs=-1, required=True)
@data_dir_option
@json_option
def allow(app_id: str, user_ids: tuple[str, ...], data_dir: Path, as_json: bool) -> None:
    """Add Dify users to a private app's allow-list."""
    from license_server.inner_api import service

    async def work(session: AsyncSession) -> dict[str, Any]:
        return _app(await service.allow_users(_records(session), app_id=app_id, user_ids=user_ids))

    emit(_run(data_dir, work, as_json=as_json), as_json=as_json)


@apps.command("disallow")
@click.argument("app_id")
@click.argument("user_id")
@data_dir_option
@json_option
def disallow(app_id: str, user_id: str, data_dir: Path, as_json: bool) -> None:
    """Remove a user from an app's allow-list."""
    from license_server.inner_api import service

    async def work(session: AsyncSession) -> dict[str, Any]:
        return _app(await service.disallow_user(_records(session), app_id=app_id, user_id=user_id))

    emit(_run(data_dir, work, as_json=as_json), as_json=as_json)


# -- default workspace ----------------------------------------------------------------------------------------------
@edge.group("default-workspace")
def default_workspace() -> None:
    """The Dify workspace (a UUID) that new accounts join through /default-workspace/members."""


@default_workspace.command("set")
@click.argument("workspace_id")
@data_dir_option
@json_option
def set_default(workspace_id: str, data_dir: Path, as_json: bool) -> None:
    from license_server.inner_api import service

    async def work(session: AsyncSession) -> str | None:
        return await service.set_default_workspace(_records(session), workspace_id=workspace_id)

    emit({"default_workspace_id": _run(data_dir, work, as_json=as_json)}, as_json=as_json)


@default_workspace.command("clear")
@data_dir_option
@json_option
def clear_default(data_dir: Path, as_json: bool) -> None:
    from license_server.inner_api import service

    async def work(session: AsyncSession) -> None:
        await service.set_default_workspace(_records(session), workspace_id=None)

    _run(data_dir, work, as_json=as_json)
    emit({"default_workspace_id": None}, as_json=as_json)
