"""``billing credits``: grant credits to an account, read its balance and its ledger."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal, InvalidOperation

import click
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.tokens import cli_actor
from license_server.billing.accounts import service as accounts
from license_server.billing.credits import service
from license_server.billing.credits.burndown import CreditKind
from license_server.billing.credits.schemas import BalanceOut, CreditWriteOut, MovementOut, credits_text
from license_server.cli.common import (
    emit,
    emit_list,
    json_option,
    model_payload,
    parse_timestamp,
    run_with_session,
    timestamp_text,
)
from license_server.runtime import Runtime

platform_option = click.option("--platform", "platform_id", type=click.UUID, required=True, help="The platform's id.")
account_option = click.option("--account", "external_id", required=True, help="The account's external id.")


def _decimal(value: str) -> Decimal:
    """Exactly what was typed: ``12.5`` stays 12.5 (the service refuses what the ledger cannot hold)."""
    try:
        amount = Decimal(value.strip())
    except InvalidOperation:
        raise click.BadParameter("must be a decimal number such as 12.5", param_hint="--amount") from None
    if not amount.is_finite():
        raise click.BadParameter("must be a finite number", param_hint="--amount")
    return amount


@click.group()
def credits() -> None:
    """Credits: grants (included, promotional, prepaid), balances and the ledger of every movement."""


@credits.command()
@platform_option
@account_option
@click.option("--kind", type=click.Choice([k.value for k in CreditKind]), required=True)
@click.option("--amount", required=True, help="Credits, a decimal such as 150 or 12.5 (at most 6 decimal places).")
@click.option(
    "--expires", default=None, help="Expiry (YYYY-MM-DD or RFC 3339): promotional only, or to end included early."
)
@click.option("--idempotency-key", default=None, help="Makes a retried grant a no-op (default: a new random key).")
@click.option("--description", default="", help="Shown in the ledger.")
@json_option
def grant(
    platform_id: uuid.UUID,
    external_id: str,
    kind: str,
    amount: str,
    expires: str | None,
    idempotency_key: str | None,
    description: str,
    as_json: bool,
) -> None:
    """Grant credits to an account (created on the platform's default plan if it is new); the action is audited."""
    credits_amount = _decimal(amount)
    expires_at: datetime | None = parse_timestamp(expires, "expires")
    key = idempotency_key or f"cli-{uuid.uuid4().hex}"

    async def work(runtime: Runtime, session: AsyncSession) -> CreditWriteOut:
        account = await accounts.ensure_account(
            session, platform_id=platform_id, external_id=external_id, clock=runtime.clock
        )
        account_id = account.id
        result = await service.grant_credits(
            session,
            state=runtime.billing,
            actor=cli_actor(),
            account_id=account_id,
            kind=CreditKind(kind),
            amount=credits_amount,
            idempotency_key=key,
            expires_at=expires_at,
            description=description,
            clock=runtime.clock,
        )
        balance = await service.credit_balance(session, account_id=account_id, clock=runtime.clock)
        return CreditWriteOut.of_write(result, balance)

    written = run_with_session(work, as_json=as_json)
    grant_row = written.grant
    emit(
        model_payload(written),
        as_json=as_json,
        human=f"granted {written.amount} {kind} credits (grant {grant_row.id if grant_row else '-'}, expires "
        f"{timestamp_text(grant_row.expires_at) if grant_row and grant_row.expires_at else 'never'}); "
        f"available now: {written.balance.available}",
    )


@credits.command()
@platform_option
@account_option
@json_option
def balance(platform_id: uuid.UUID, external_id: str, as_json: bool) -> None:
    """What the account's grants hold, by kind; flex on or off and this period's flex."""

    async def work(runtime: Runtime, session: AsyncSession) -> BalanceOut:
        account = await accounts.get_account(session, platform_id, external_id)
        return BalanceOut.of(await service.credit_balance(session, account_id=account.id, clock=runtime.clock))

    emit(model_payload(run_with_session(work, as_json=as_json)), as_json=as_json)


@credits.command()
@platform_option
@account_option
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@json_option
def ledger(platform_id: uuid.UUID, external_id: str, limit: int, offset: int, as_json: bool) -> None:
    """Every credit movement, newest first; each debit with the grants it drew from."""

    async def work(_: Runtime, session: AsyncSession) -> tuple[list[MovementOut], int]:
        account = await accounts.get_account(session, platform_id, external_id)
        records, total = await service.list_movements(session, account_id=account.id, limit=limit, offset=offset)
        return [MovementOut.of(r) for r in records], total

    def line(row: MovementOut) -> str:
        drawn = ", ".join(f"{d.kind} {credits_text(d.amount)}" for d in row.draws)
        return (
            f"{row.id:>6}  {timestamp_text(row.occurred_at)}  {row.kind:8} {credits_text(row.amount):>14}"
            + (f"  ({drawn})" if drawn else "")
            + (f"  {row.description}" if row.description else "")
        )

    rows, total = run_with_session(work, as_json=as_json)
    emit_list(rows, as_json=as_json, things="credit movements", row=line, total=total, limit=limit, offset=offset)
