"""``customers``, ``plans`` and ``licenses``."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.tokens import cli_actor
from license_server.cli.common import (
    emit,
    emit_list,
    json_option,
    model_payload,
    parse_json_option,
    parse_model,
    parse_timestamp,
    report_error,
    run_with_session,
    usage_error,
)
from license_server.deployments import service as deployments
from license_server.errors import ValidationFailed
from license_server.licenses import service
from license_server.licenses.schemas import CustomerOut, LicenseOut, PlanOut, license_out, license_with_key
from license_server.licenses.service import LicenseView
from license_server.licenses.terms import LicenseTerms
from license_server.lifecycle.status import Status
from license_server.runtime import Runtime


def _terms_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Shortcuts for common terms, plus --terms for any of them as JSON (see docs/license-document.md)."""
    options = [
        click.option("--terms", "terms_json", default=None, help="Terms as JSON, e.g. '{\"sso\": {...}}'."),
        click.option("--max-activations", type=int, default=None, help="Deployment seats (0 = unlimited)."),
        click.option("--workspaces", type=int, default=None, help="Workspace limit (0 = unlimited)."),
        click.option("--members-per-workspace", type=int, default=None, help="Members per workspace limit."),
        click.option("--seats", type=int, default=None, help="Licensed seats."),
        click.option("--grace-days", type=int, default=None, help="Days the license works past expiry."),
        click.option("--notice-days", type=int, default=None, help="Days before expiry it reads 'expiring'."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _terms(
    terms_json: str | None,
    max_activations: int | None,
    workspaces: int | None,
    members_per_workspace: int | None,
    seats: int | None,
    grace_days: int | None,
    notice_days: int | None,
    *,
    as_json: bool,
) -> LicenseTerms | None:
    data: dict[str, Any] = parse_json_option(terms_json, "--terms", as_json=as_json) if terms_json else {}
    if not isinstance(data, dict):
        usage_error("--terms: must be a JSON object", as_json=as_json)
    shortcuts = {"max_activations": max_activations, "grace_days": grace_days, "notice_days": notice_days}
    data.update({k: v for k, v in shortcuts.items() if v is not None})
    limits = {
        "workspaces": workspaces,
        "members_per_workspace": members_per_workspace,
        "licensed_seats": seats,
    }
    data.update({k: {"enabled": True, "limit": v} for k, v in limits.items() if v is not None})
    if not data:
        return None
    try:
        terms: LicenseTerms = parse_model(LicenseTerms, json.dumps(data), "terms")
    except ValidationFailed as exc:
        report_error(exc, as_json=as_json)
    return terms


def _show_license(payload: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit(payload, as_json=True)
        return
    effective = payload.pop("effective_terms")
    emit(payload, as_json=False)
    click.echo("effective_terms: " + json.dumps(effective, sort_keys=True))


# -- customers --------------------------------------------------------------------------------------------------
@click.group()
def customers() -> None:
    """Customers."""


@customers.command("create")
@click.option("--name", required=True)
@click.option("--email", "contact_email", default=None)
@click.option("--external-id", default=None, help="The customer's id in your CRM or billing system.")
@json_option
def create_customer(name: str, contact_email: str | None, external_id: str | None, as_json: bool) -> None:
    """Create a customer."""
    from license_server.licenses.schemas import CustomerCreate

    data: CustomerCreate = parse_model(
        CustomerCreate,
        json.dumps({"name": name, "contact_email": contact_email, "external_id": external_id}),
        "customer",
    )

    async def work(runtime: Runtime, session: AsyncSession) -> CustomerOut:
        return CustomerOut.model_validate(
            await service.create_customer(
                session,
                actor=cli_actor(),
                name=data.name,
                contact_email=data.contact_email,
                external_id=data.external_id,
                clock=runtime.clock,
            )
        )

    emit(model_payload(run_with_session(work, as_json=as_json)), as_json=as_json)


@customers.command("list")
@click.option("--limit", type=click.IntRange(1, 500), default=100)
@click.option("--offset", type=click.IntRange(0), default=0)
@json_option
def list_customers(limit: int, offset: int, as_json: bool) -> None:
    """List customers."""

    async def work(_: Runtime, session: AsyncSession) -> tuple[list[CustomerOut], int]:
        rows, total = await service.list_customers(session, limit=limit, offset=offset)
        return [CustomerOut.model_validate(r) for r in rows], total

    rows, total = run_with_session(work, as_json=as_json)
    emit_list(
        rows,
        as_json=as_json,
        things="customers",
        row=lambda row: f"{row.id}  {row.name}  {row.external_id or ''}",
        total=total,
        limit=limit,
        offset=offset,
    )


@customers.command("show")
@click.argument("customer_id", type=click.UUID)
@json_option
def show_customer(customer_id: uuid.UUID, as_json: bool) -> None:
    """One customer."""

    async def work(_: Runtime, session: AsyncSession) -> CustomerOut:
        return CustomerOut.model_validate(await service.get_customer(session, customer_id))

    emit(model_payload(run_with_session(work, as_json=as_json)), as_json=as_json)


@customers.command("update")
@click.argument("customer_id", type=click.UUID)
@click.option("--name", default=None)
@click.option("--email", "contact_email", default=None)
@click.option("--clear-email", is_flag=True, help="Remove the contact email.")
@click.option("--external-id", default=None, help="The customer's id in your CRM or billing system.")
@click.option("--clear-external-id", is_flag=True, help="Remove the external id.")
@json_option
def update_customer(
    customer_id: uuid.UUID,
    name: str | None,
    contact_email: str | None,
    clear_email: bool,
    external_id: str | None,
    clear_external_id: bool,
    as_json: bool,
) -> None:
    """Change a customer's name, contact email or external id (its license documents are re-signed at next poll)."""
    from license_server.licenses.schemas import CustomerUpdate

    sent: dict[str, Any] = {}
    if name is not None:
        sent["name"] = name
    if clear_email or contact_email is not None:
        sent["contact_email"] = None if clear_email else contact_email
    if clear_external_id or external_id is not None:
        sent["external_id"] = None if clear_external_id else external_id
    data: CustomerUpdate = parse_model(CustomerUpdate, json.dumps(sent), "customer")

    async def work(runtime: Runtime, session: AsyncSession) -> CustomerOut:
        return CustomerOut.model_validate(
            await service.update_customer(
                session,
                actor=cli_actor(),
                customer_id=customer_id,
                name=data.name,
                contact_email=data.contact_email if "contact_email" in sent else service.KEEP,
                external_id=data.external_id if "external_id" in sent else service.KEEP,
                clock=runtime.clock,
            )
        )

    emit(model_payload(run_with_session(work, as_json=as_json)), as_json=as_json)


# -- plans ------------------------------------------------------------------------------------------------------
@click.group()
def plans() -> None:
    """Plans: named templates of license terms."""


@plans.command("create")
@click.option("--code", required=True, help="Short unique name, e.g. enterprise.")
@click.option("--name", required=True)
@click.option("--description", default="")
@_terms_options
@json_option
def create_plan(code: str, name: str, description: str, as_json: bool, **terms_options: Any) -> None:
    """Create a plan."""
    from license_server.licenses.schemas import PlanCreate

    data: PlanCreate = parse_model(
        PlanCreate, json.dumps({"code": code, "name": name, "description": description}), "plan"
    )
    terms = _terms(**terms_options, as_json=as_json)

    async def work(runtime: Runtime, session: AsyncSession) -> PlanOut:
        return PlanOut.model_validate(
            await service.create_plan(
                session,
                actor=cli_actor(),
                code=data.code,
                name=data.name,
                description=data.description,
                terms=terms,
                clock=runtime.clock,
            )
        )

    emit(model_payload(run_with_session(work, as_json=as_json)), as_json=as_json)


@plans.command("list")
@json_option
def list_plans(as_json: bool) -> None:
    """List plans."""

    async def work(_: Runtime, session: AsyncSession) -> list[PlanOut]:
        rows, _total = await service.list_plans(session, limit=500, offset=0)
        return [PlanOut.model_validate(r) for r in rows]

    emit_list(
        run_with_session(work, as_json=as_json),
        as_json=as_json,
        things="plans",
        row=lambda row: f"{row.id}  {row.code:20} {row.name}  {json.dumps(row.terms, sort_keys=True)}",
    )


@plans.command("show")
@click.argument("plan_ref")
@json_option
def show_plan(plan_ref: str, as_json: bool) -> None:
    """One plan, by id or code."""

    async def work(_: Runtime, session: AsyncSession) -> PlanOut:
        return PlanOut.model_validate(await service.resolve_plan(session, plan_ref))

    emit(model_payload(run_with_session(work, as_json=as_json)), as_json=as_json)


@plans.command("update")
@click.argument("plan_ref")
@click.option("--name", default=None)
@click.option("--description", default=None)
@_terms_options
@json_option
def update_plan(plan_ref: str, name: str | None, description: str | None, as_json: bool, **terms_options: Any) -> None:
    """Change a plan's name, description or terms (merged in); licenses on the plan follow its new terms."""
    from license_server.licenses.schemas import PlanUpdate

    data: PlanUpdate = parse_model(PlanUpdate, json.dumps({"name": name, "description": description}), "plan")
    terms = _terms(**terms_options, as_json=as_json)

    async def work(runtime: Runtime, session: AsyncSession) -> PlanOut:
        return PlanOut.model_validate(
            await service.update_plan(
                session,
                actor=cli_actor(),
                plan_ref=plan_ref,
                name=data.name,
                description=data.description,
                terms=terms,
                clock=runtime.clock,
            )
        )

    emit(model_payload(run_with_session(work, as_json=as_json)), as_json=as_json)


# -- licenses ---------------------------------------------------------------------------------------------------
@click.group()
def licenses() -> None:
    """Licenses."""


@licenses.command("issue")
@click.option("--customer", "customer_id", type=click.UUID, default=None, help="Required without --from-csv.")
@click.option("--expires", default=None, help="YYYY-MM-DD (00:00 UTC) or an RFC 3339 timestamp. Required too.")
@click.option("--starts", default=None, help="Default: now.")
@click.option("--plan", "plan_ref", default=None, help="Plan id or code.")
@click.option("--notes", default="")
@click.option(
    "--from-csv",
    "from_csv",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Issue one license per row instead: columns customer, expires and optionally starts, plan, notes, terms "
    "(JSON), idempotency_key (a row with one is issued once however often the file is run).",
)
@_terms_options
@json_option
def issue(
    customer_id: uuid.UUID | None,
    expires: str | None,
    starts: str | None,
    plan_ref: str | None,
    notes: str,
    from_csv: Path | None,
    as_json: bool,
    **terms_options: Any,
) -> None:
    """Issue a license (or one per row of --from-csv). Its key is printed once."""
    if from_csv is not None:
        given = [name for name, value in [("--customer", customer_id), ("--expires", expires)] if value is not None]
        if given or starts or plan_ref or notes or any(v is not None for v in terms_options.values()):
            usage_error("--from-csv takes every value from the file: give no other license option", as_json=as_json)
        from license_server.cli.licenses_csv import issue_from_csv

        issue_from_csv(from_csv, as_json=as_json)
        return
    for option, value in [("--customer", customer_id), ("--expires", expires)]:
        if value is None:
            usage_error(f"Missing option '{option}' (or give --from-csv FILE).", as_json=as_json)
    assert customer_id is not None
    expires_at = parse_timestamp(expires, "expires")
    starts_at = parse_timestamp(starts, "starts")
    terms = _terms(**terms_options, as_json=as_json)
    assert expires_at is not None

    async def work(runtime: Runtime, session: AsyncSession) -> dict[str, Any]:
        issued = await service.issue_license(
            session,
            actor=cli_actor(),
            hasher=runtime.hasher,
            customer_id=customer_id,
            expires_at=expires_at,
            starts_at=starts_at,
            plan_ref=plan_ref,
            terms=terms,
            notes=notes,
            clock=runtime.clock,
        )
        return model_payload(license_with_key(issued))

    payload = run_with_session(work, as_json=as_json)
    if as_json:
        emit(payload, as_json=True)
        return
    click.echo(f"license {payload['id']}  status {payload['status']} ({payload['status_reason']})")
    click.echo(f"license key (shown once, store it now): {payload['key']}")


@licenses.command("list")
@click.option("--status", type=click.Choice([s.value for s in Status]), default=None)
@click.option("--customer", "customer_id", type=click.UUID, default=None)
@click.option("--expires-within-days", type=click.IntRange(0, 36500), default=None, help="e.g. 30: expiring soon.")
@click.option("--limit", type=click.IntRange(1, 500), default=100)
@click.option("--offset", type=click.IntRange(0), default=0)
@json_option
def list_licenses(
    status: str | None,
    customer_id: uuid.UUID | None,
    expires_within_days: int | None,
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    """List licenses with their computed status."""

    async def work(runtime: Runtime, session: AsyncSession) -> tuple[list[LicenseOut], int]:
        views, total = await service.list_licenses(
            session,
            limit=limit,
            offset=offset,
            status=status,
            customer_id=customer_id,
            clock=runtime.clock,
            expires_within=timedelta(days=expires_within_days) if expires_within_days is not None else None,
        )
        return [license_out(v) for v in views], total

    rows, total = run_with_session(work, as_json=as_json)
    emit_list(
        rows,
        as_json=as_json,
        things="licenses",
        row=lambda row: (
            f"{row.id}  {row.status:9} {row.status_reason:17} expires {row.expires_at.date()}  {row.customer_name}"
        ),
        total=total,
        limit=limit,
        offset=offset,
    )


def _license_command(
    name: str, help_text: str, action: Callable[[Runtime, AsyncSession, uuid.UUID], Awaitable[LicenseView]]
) -> None:
    @licenses.command(name, help=help_text)
    @click.argument("license_id", type=click.UUID)
    @json_option
    def command(license_id: uuid.UUID, as_json: bool) -> None:
        async def work(runtime: Runtime, session: AsyncSession) -> dict[str, Any]:
            return model_payload(license_out(await action(runtime, session, license_id)))

        _show_license(run_with_session(work, as_json=as_json), as_json)


_license_command(
    "show",
    "Show a license with its computed status and effective terms.",
    lambda rt, s, lid: service.get_license(s, lid, clock=rt.clock),
)
_license_command(
    "reinstate",
    "Reinstate a suspended license.",
    lambda rt, s, lid: service.reinstate_license(s, actor=cli_actor(), license_id=lid, clock=rt.clock),
)


@licenses.command("suspend")
@click.argument("license_id", type=click.UUID)
@click.option("--reason", default="")
@json_option
def suspend(license_id: uuid.UUID, reason: str, as_json: bool) -> None:
    """Suspend a license (reversible with reinstate)."""

    async def work(runtime: Runtime, session: AsyncSession) -> dict[str, Any]:
        return model_payload(
            license_out(
                await service.suspend_license(
                    session, actor=cli_actor(), license_id=license_id, reason=reason, clock=runtime.clock
                )
            )
        )

    _show_license(run_with_session(work, as_json=as_json), as_json)


@licenses.command("revoke")
@click.argument("license_id", type=click.UUID)
@click.option("--reason", default="")
@json_option
def revoke(license_id: uuid.UUID, reason: str, as_json: bool) -> None:
    """Revoke a license. Permanent."""

    async def work(runtime: Runtime, session: AsyncSession) -> dict[str, Any]:
        return model_payload(
            license_out(
                await service.revoke_license(
                    session, actor=cli_actor(), license_id=license_id, reason=reason, clock=runtime.clock
                )
            )
        )

    _show_license(run_with_session(work, as_json=as_json), as_json)


@licenses.command("renew")
@click.argument("license_id", type=click.UUID)
@click.option("--expires", required=True, help="The new expiry, later than the current one.")
@json_option
def renew(license_id: uuid.UUID, expires: str, as_json: bool) -> None:
    """Extend a license's expiry."""
    expires_at = parse_timestamp(expires, "expires")
    assert expires_at is not None

    async def work(runtime: Runtime, session: AsyncSession) -> dict[str, Any]:
        return model_payload(
            license_out(
                await service.renew_license(
                    session,
                    actor=cli_actor(),
                    license_id=license_id,
                    expires_at=expires_at,
                    clock=runtime.clock,
                )
            )
        )

    _show_license(run_with_session(work, as_json=as_json), as_json)


@licenses.command("update")
@click.argument("license_id", type=click.UUID)
@click.option("--starts", default=None)
@click.option("--plan", "plan_ref", default=None)
@click.option("--notes", default=None)
@_terms_options
@json_option
def update(
    license_id: uuid.UUID,
    starts: str | None,
    plan_ref: str | None,
    notes: str | None,
    as_json: bool,
    **terms_options: Any,
) -> None:
    """Change a license's terms (merged into its overrides), plan, start or notes."""
    starts_at = parse_timestamp(starts, "starts")
    terms = _terms(**terms_options, as_json=as_json)

    async def work(runtime: Runtime, session: AsyncSession) -> dict[str, Any]:
        return model_payload(
            license_out(
                await service.update_license(
                    session,
                    actor=cli_actor(),
                    license_id=license_id,
                    terms=terms,
                    starts_at=starts_at,
                    plan_ref=plan_ref,
                    notes=notes,
                    clock=runtime.clock,
                )
            )
        )

    _show_license(run_with_session(work, as_json=as_json), as_json)


@licenses.command("rotate-key")
@click.argument("license_id", type=click.UUID)
@json_option
def rotate_key(license_id: uuid.UUID, as_json: bool) -> None:
    """Replace the license key; the new key is printed once."""

    async def work(runtime: Runtime, session: AsyncSession) -> dict[str, Any]:
        issued = await service.rotate_license_key(
            session, actor=cli_actor(), hasher=runtime.hasher, license_id=license_id, clock=runtime.clock
        )
        return model_payload(license_with_key(issued))

    payload = run_with_session(work, as_json=as_json)
    emit(
        {"id": payload["id"], "key": payload["key"]},
        as_json=as_json,
        human=f"new license key (shown once): {payload['key']}",
    )


@licenses.command("document")
@click.argument("license_id", type=click.UUID)
@click.option("--out", "out_file", type=click.Path(path_type=Path), default=None, help="Default: print it.")
@json_option
def document(license_id: uuid.UUID, out_file: Path | None, as_json: bool) -> None:
    """Write the signed license document (JWS)."""

    async def work(runtime: Runtime, session: AsyncSession) -> str:
        return await deployments.license_document(
            session,
            signer=runtime.signer,
            issuer=runtime.settings.issuer,
            license_id=license_id,
            ttl=runtime.settings.document_ttl,
            clock=runtime.clock,
        )

    token = run_with_session(work, as_json=as_json)
    if out_file is None:
        emit({"document": token}, as_json=as_json, human=token)
    else:
        out_file.write_text(token + "\n")
        emit({"document": token, "file": str(out_file)}, as_json=as_json, human=f"wrote {out_file}")


# The inner API (Dify) settings of a license, as subcommands: licenses credentials|workspace-policy|default-workspace.
from license_server.cli.inner_api import credentials, default_workspace, workspace_policy  # noqa: E402

licenses.add_command(credentials)
licenses.add_command(workspace_policy)
licenses.add_command(default_workspace)
