"""``billing clocks``: test clocks — create one, attach accounts, advance it (running the jobs), show it."""

from __future__ import annotations

import uuid
from typing import Any

import click
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.tokens import cli_actor
from license_server.billing.clocks import jobs, service
from license_server.billing.clocks.controllers import clock_out
from license_server.billing.clocks.schemas import ClockAdvanced
from license_server.cli.common import emit, json_option, parse_timestamp, run_with_session
from license_server.runtime import Runtime

clock_argument = click.argument("clock_id", type=click.UUID)


def _emit_clock(payload: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit(payload, as_json=True)
        return
    click.echo(f"{payload['id']}  {payload['name']}  now {payload['frozen_now']}")
    for external_id in payload["accounts"]:
        click.echo(f"  {external_id}")
    for step in payload.get("steps", []):
        click.echo(f"  stopped at {step}")


@click.group()
def clocks() -> None:
    """Test clocks: attached accounts read the clock's time; advancing it runs the jobs real time runs."""


@clocks.command()
@click.option("--name", required=True)
@click.option(
    "--now", "frozen_now", default=None, help="The clock's first time (RFC 3339 or YYYY-MM-DD); default: now."
)
@json_option
def create(name: str, frozen_now: str | None, as_json: bool) -> None:
    """Create a test clock."""
    start = parse_timestamp(frozen_now, "now")

    async def work(runtime: Runtime, session: AsyncSession) -> dict[str, Any]:
        clock = await service.create_clock(session, actor=cli_actor(), name=name, frozen_now=start, clock=runtime.clock)
        return (await clock_out(session, clock)).model_dump(mode="json")

    _emit_clock(run_with_session(work, as_json=as_json), as_json)


@clocks.command()
@clock_argument
@click.option("--platform", "platform_id", type=click.UUID, required=True, help="The accounts' platform.")
@click.option("--account", "external_ids", multiple=True, required=True, help="An external id (repeat for a group).")
@json_option
def attach(clock_id: uuid.UUID, platform_id: uuid.UUID, external_ids: tuple[str, ...], as_json: bool) -> None:
    """Attach accounts to the clock."""

    async def work(runtime: Runtime, session: AsyncSession) -> dict[str, Any]:
        await service.attach_accounts(
            session,
            actor=cli_actor(),
            clock_id=clock_id,
            platform_id=platform_id,
            external_ids=list(external_ids),
            clock=runtime.clock,
        )
        return (await clock_out(session, await service.get_clock(session, clock_id))).model_dump(mode="json")

    _emit_clock(run_with_session(work, as_json=as_json), as_json)


@clocks.command()
@clock_argument
@click.option("--to", "to", default=None, help="The instant to move to (RFC 3339 or YYYY-MM-DD).")
@click.option("--months", type=click.IntRange(0, 120), default=0)
@click.option("--days", type=click.IntRange(0, 3660), default=0)
@json_option
def advance(clock_id: uuid.UUID, to: str | None, months: int, days: int, as_json: bool) -> None:
    """Move the clock forward (to --to, or by --months and --days), running the jobs at every boundary passed."""
    target = parse_timestamp(to, "to")
    if (target is None) == (months == 0 and days == 0):
        raise click.UsageError("give either --to, or --months and/or --days")

    async def work(runtime: Runtime, session: AsyncSession) -> dict[str, Any]:
        result = await jobs.advance_clock(
            session,
            state=runtime.billing,
            actor=cli_actor(),
            clock_id=clock_id,
            to=target,
            months=months,
            days=days,
        )
        out = await clock_out(session, result.clock)
        return ClockAdvanced(**out.model_dump(), steps=result.steps).model_dump(mode="json")

    _emit_clock(run_with_session(work, as_json=as_json), as_json)


@clocks.command()
@clock_argument
@json_option
def show(clock_id: uuid.UUID, as_json: bool) -> None:
    """The clock's time and its accounts."""

    async def work(runtime: Runtime, session: AsyncSession) -> dict[str, Any]:
        return (await clock_out(session, await service.get_clock(session, clock_id))).model_dump(mode="json")

    _emit_clock(run_with_session(work, as_json=as_json), as_json)
