"""``activations``: deployments across licenses (``--state lost`` for the ones gone quiet) and freeing a seat."""

from __future__ import annotations

import uuid

import click
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.tokens import cli_actor
from license_server.cli.common import emit, emit_list, json_option, model_payload, run_with_session, timestamp_text
from license_server.deployments import service
from license_server.deployments.schemas import ActivationOut
from license_server.deployments.views import activation_out, list_activations
from license_server.runtime import Runtime


@click.group()
def activations() -> None:
    """Activations (deployments) across licenses."""


@activations.command("list")
@click.option("--state", type=click.Choice(["live", "lost", "deactivated"]), default=None)
@click.option("--license", "license_id", type=click.UUID, default=None)
@click.option("--limit", type=click.IntRange(1, 500), default=100, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@json_option
def list_(state: str | None, license_id: uuid.UUID | None, limit: int, offset: int, as_json: bool) -> None:
    """Activations, e.g. --state lost for deployments that stopped polling."""

    async def work(_: Runtime, session: AsyncSession) -> tuple[list[ActivationOut], int]:
        return await list_activations(session, license_id=license_id, state=state, limit=limit, offset=offset)

    rows, total = run_with_session(work, as_json=as_json)

    def line(row: ActivationOut) -> str:
        state_text = "deactivated" if row.deactivated_at else "lost" if row.lost_at else "live"
        seen = timestamp_text(row.last_seen_at)
        return f"{row.id}  {state_text:11} last seen {seen}  {row.license_id}  {row.hostname or ''}"

    emit_list(rows, as_json=as_json, things="activations", row=line, total=total, limit=limit, offset=offset)


@activations.command("deactivate")
@click.argument("activation_id", type=click.UUID)
@json_option
def deactivate(activation_id: uuid.UUID, as_json: bool) -> None:
    """Deactivate an activation, freeing its seat (a lost deployment that will not come back)."""

    async def work(runtime: Runtime, session: AsyncSession) -> ActivationOut:
        activation = await service.deactivate(
            session, runtime=runtime, activation_id=activation_id, by=cli_actor().name, clock=runtime.clock
        )
        return activation_out(activation, None)

    row = run_with_session(work, as_json=as_json)
    emit(model_payload(row), as_json=as_json, human=f"deactivated {row.id}")
