"""``tokens``: admin bearer tokens."""

from __future__ import annotations

import uuid

import click
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth import tokens as token_service
from license_server.auth.schemas import TokenOut
from license_server.auth.tokens import Role, cli_actor
from license_server.cli.common import emit, emit_list, json_option, run_with_session
from license_server.runtime import Runtime


@click.group()
def tokens() -> None:
    """Admin tokens."""


@tokens.command()
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option("--name", default=None, help="What the token is for (default: the role).")
@json_option
def create(role: str, name: str | None, as_json: bool) -> None:
    """Create a token; it is printed once."""

    async def work(runtime: Runtime, session: AsyncSession) -> token_service.CreatedToken:
        return await token_service.create_token(
            session, hasher=runtime.hasher, actor=cli_actor(), name=name or role, role=Role(role)
        )

    created = run_with_session(work, as_json=as_json)
    emit(
        {"token": created.secret, "id": str(created.token.id), "role": role},
        as_json=as_json,
        human=f"token (shown once): {created.secret}\nid: {created.token.id}  role: {role}",
    )


@tokens.command("list")
@json_option
def list_tokens(as_json: bool) -> None:
    """List tokens (never their secrets)."""

    async def work(_: Runtime, session: AsyncSession) -> list[TokenOut]:
        return [TokenOut.model_validate(t) for t in await token_service.list_tokens(session)]

    def line(row: TokenOut) -> str:
        state = "revoked" if row.revoked_at else "active"
        return f"{row.id}  {row.role.value:8} {state:8} …{row.token_hint}  {row.name}"

    emit_list(run_with_session(work, as_json=as_json), as_json=as_json, things="tokens", row=line)


@tokens.command()
@click.argument("token_id", type=click.UUID)
@json_option
def revoke(token_id: uuid.UUID, as_json: bool) -> None:
    """Revoke a token by id."""

    async def work(_: Runtime, session: AsyncSession) -> None:
        await token_service.revoke_token(session, actor=cli_actor(), token_id=token_id)

    run_with_session(work, as_json=as_json)
    emit({"id": str(token_id), "revoked": True}, as_json=as_json, human=f"revoked {token_id}")
