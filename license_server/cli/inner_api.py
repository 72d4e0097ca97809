"""``licenses credentials|workspace-policy|default-workspace``: the inner API (Dify) settings of a license."""

from __future__ import annotations

import uuid
from typing import Any

import click
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.tokens import cli_actor
from license_server.cli.common import emit, emit_list, json_option, model_payload, run_with_session
from license_server.inner_api import service
from license_server.inner_api.controllers import credential_out, policy_out, settings_out
from license_server.inner_api.store import VendorInnerApiRecords, get_settings, license_records
from license_server.runtime import Runtime


async def _records(runtime: Runtime, session: AsyncSession, license_id: uuid.UUID) -> VendorInnerApiRecords:
    """The license's inner-API records; changes are audited as the CLI's actor."""
    return await license_records(
        session, license_id=license_id, hasher=runtime.hasher, actor=cli_actor(), clock=runtime.clock
    )


@click.group()
def credentials() -> None:
    """Inner-API credentials: the ENTERPRISE_API_SECRET_KEY a Dify deployment sends."""


@credentials.command("create")
@click.argument("license_id", type=click.UUID)
@click.option("--label", default="", help="e.g. the deployment it is for.")
@json_option
def create_credential(license_id: uuid.UUID, label: str, as_json: bool) -> None:
    """Create a credential. The secret is printed once."""

    async def work(runtime: Runtime, session: AsyncSession) -> dict[str, Any]:
        created = await service.create_credential(await _records(runtime, session, license_id), label=label)
        return {**model_payload(credential_out(created.credential)), "secret": created.secret}

    payload = run_with_session(work, as_json=as_json)
    if as_json:
        emit(payload, as_json=True)
        return
    click.echo(f"credential {payload['id']} for license {payload['license_id']}")
    click.echo(f"secret (shown once; set it as ENTERPRISE_API_SECRET_KEY): {payload['secret']}")


@credentials.command("list")
@click.argument("license_id", type=click.UUID)
@json_option
def list_credentials(license_id: uuid.UUID, as_json: bool) -> None:
    """A license's credentials (never their secrets)."""

    async def work(runtime: Runtime, session: AsyncSession) -> list[dict[str, Any]]:
        rows = await service.list_credentials(await _records(runtime, session, license_id))
        return [model_payload(credential_out(row)) for row in rows]

    rows = run_with_session(work, as_json=as_json)

    def line(row: dict[str, Any]) -> str:
        state = f"revoked {row['revoked_at']}" if row["revoked_at"] else "active"
        return f"{row['id']}  ...{row['hint']}  {state}  {row['label']}"

    emit_list(rows, as_json=as_json, things="credentials", row=line)


@credentials.command("revoke")
@click.argument("license_id", type=click.UUID)
@click.argument("credential_id", type=click.UUID)
@json_option
def revoke_credential(license_id: uuid.UUID, credential_id: uuid.UUID, as_json: bool) -> None:
    """Revoke a credential: calls with its secret get 401 (other server processes: within poll_cache_seconds)."""

    async def work(runtime: Runtime, session: AsyncSession) -> dict[str, Any]:
        records = await _records(runtime, session, license_id)
        credential = await service.revoke_credential(records, credential_id=credential_id)
        return model_payload(credential_out(credential))

    emit(run_with_session(work, as_json=as_json), as_json=as_json)


@click.group("workspace-policy")
def workspace_policy() -> None:
    """Per-workspace overrides of the license's workspace policy (member invites, owner transfer)."""


@workspace_policy.command("set")
@click.argument("license_id", type=click.UUID)
@click.argument("workspace_id")
@click.option("--allow-member-invite/--no-allow-member-invite", required=True)
@click.option("--allow-owner-transfer/--no-allow-owner-transfer", required=True)
@json_option
def set_policy(
    license_id: uuid.UUID, workspace_id: str, allow_member_invite: bool, allow_owner_transfer: bool, as_json: bool
) -> None:
    """Override one workspace's policy."""
    service.dify_id(workspace_id, "workspace_id")

    async def work(runtime: Runtime, session: AsyncSession) -> dict[str, Any]:
        row = await service.set_workspace_policy(
            await _records(runtime, session, license_id),
            workspace_id=workspace_id,
            allow_member_invite=allow_member_invite,
            allow_owner_transfer=allow_owner_transfer,
        )
        return model_payload(policy_out(row))

    emit(run_with_session(work, as_json=as_json), as_json=as_json)


@workspace_policy.command("clear")
@click.argument("license_id", type=click.UUID)
@click.argument("workspace_id")
@json_option
def clear_policy(license_id: uuid.UUID, workspace_id: str, as_json: bool) -> None:
    """Remove a workspace's override: it follows the license default again."""

    async def work(runtime: Runtime, session: AsyncSession) -> dict[str, Any]:
        records = await _records(runtime, session, license_id)
        removed = await service.clear_workspace_policy(records, workspace_id=workspace_id)
        return {"workspace_id": workspace_id, "removed": removed}

    emit(run_with_session(work, as_json=as_json), as_json=as_json)


@workspace_policy.command("list")
@click.argument("license_id", type=click.UUID)
@json_option
def list_policies(license_id: uuid.UUID, as_json: bool) -> None:
    """Workspaces with an override."""

    async def work(runtime: Runtime, session: AsyncSession) -> list[dict[str, Any]]:
        records = await _records(runtime, session, license_id)
        return [model_payload(policy_out(r)) for r in await service.list_workspace_policies(records)]

    rows = run_with_session(work, as_json=as_json)
    emit_list(
        rows,
        as_json=as_json,
        things="workspace overrides",
        row=lambda row: (
            f"{row['workspace_id']}  invite={row['allow_member_invite']}  transfer={row['allow_owner_transfer']}"
        ),
    )


@click.command("default-workspace")
@click.argument("license_id", type=click.UUID)
@click.argument("workspace_id", type=click.UUID, required=False)
@click.option("--clear", is_flag=True, help="No default workspace.")
@json_option
def default_workspace(license_id: uuid.UUID, workspace_id: uuid.UUID | None, clear: bool, as_json: bool) -> None:
    """Show, set (WORKSPACE_ID) or --clear the Dify workspace new accounts join."""
    if workspace_id is not None and clear:
        raise click.UsageError("give a WORKSPACE_ID or --clear, not both")

    async def work(runtime: Runtime, session: AsyncSession) -> dict[str, Any]:
        if workspace_id is not None or clear:
            records = await _records(runtime, session, license_id)
            await service.set_default_workspace(records, workspace_id=workspace_id)
        return model_payload(settings_out(await get_settings(session, license_id=license_id)))

    emit(run_with_session(work, as_json=as_json), as_json=as_json)
