"""``staff``: console users (email + password, a role with the admin API's permissions)."""

from __future__ import annotations

import sys

import click
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.tokens import Role, cli_actor
from license_server.cli.common import emit, emit_list, json_option, run_with_session
from license_server.console import service as staff_service
from license_server.console.models import StaffUser
from license_server.runtime import Runtime


@click.group()
def staff() -> None:
    """Console staff users."""


@staff.command()
@click.option("--email", required=True)
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from standard input (for scripts); otherwise it is prompted for, twice, hidden. "
    "Never an option value: command lines end up in shell history and process lists.",
)
@json_option
def create(email: str, role: str, password_stdin: bool, as_json: bool) -> None:
    """Create a staff user who signs in at /console."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)

    async def work(_: Runtime, session: AsyncSession) -> StaffUser:
        return await staff_service.create_staff_user(
            session, email=email, password=password, role=Role(role), actor=cli_actor()
        )

    user = run_with_session(work, as_json=as_json)
    emit(
        {"id": str(user.id), "email": user.email, "role": user.role},
        as_json=as_json,
        human=f"staff user {user.email} ({user.role}) created; sign in at /console",
    )


@staff.command("list")
@json_option
def list_staff(as_json: bool) -> None:
    """List staff users (never their password hashes)."""

    async def work(_: Runtime, session: AsyncSession) -> list[StaffUser]:
        return await staff_service.list_staff_users(session)

    users = run_with_session(work, as_json=as_json)
    emit_list(
        [{"id": str(u.id), "email": u.email, "role": u.role, "disabled": u.is_disabled} for u in users],
        as_json=as_json,
        things="staff users",
        row=lambda u: f"{u['id']}  {u['role']:8} {'disabled' if u['disabled'] else 'active':8} {u['email']}",
    )
