"""``billing invoices`` (list, show, issue, void, pdf) and ``billing payments`` (record, refund, fail, list): the
manual payment provider for staff at a terminal."""

from __future__ import annotations

import uuid
from decimal import Decimal, InvalidOperation
from pathlib import Path

import click
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.tokens import cli_actor
from license_server.billing.accounts import service as accounts
from license_server.billing.invoices import service as invoices
from license_server.billing.invoices.calculation import ZERO
from license_server.billing.invoices.document import invoice_document
from license_server.billing.invoices.rendering import invoice_pdf
from license_server.billing.invoices.schemas import InvoiceOut, PaymentOut
from license_server.billing.payments import service as payments
from license_server.billing.payments.models import Payment
from license_server.cli.common import emit, emit_list, json_option, model_payload, run_with_session, timestamp_text
from license_server.runtime import Runtime

number_argument = click.argument("number")


def _amount(value: str) -> Decimal:
    try:
        amount = Decimal(value.strip())
    except InvalidOperation:
        raise click.BadParameter("must be a decimal amount such as 489.00", param_hint="--amount") from None
    if not amount.is_finite():
        raise click.BadParameter("must be a finite amount", param_hint="--amount")
    return amount


async def _invoice_out(runtime: Runtime, session: AsyncSession, number: str) -> InvoiceOut:
    view = await invoices.get_invoice(session, number=number)
    paid, refunded = (await payments.payment_totals(session, [view.invoice.id])).get(view.invoice.id, (ZERO, ZERO))
    document = invoice_document(view, issuer=runtime.settings.invoice_issuer, paid=paid, refunded=refunded)
    return InvoiceOut.model_validate(document.as_json())


def _payment_out(payment: Payment) -> PaymentOut:
    return PaymentOut(
        id=payment.id,
        kind=payment.kind,
        amount=format(payment.amount, "f"),
        currency=payment.currency,
        provider=payment.provider,
        idempotency_key=payment.idempotency_key,
        reference=payment.reference,
        note=payment.note,
        occurred_at=payment.occurred_at,
    )


# -- invoices ----------------------------------------------------------------------------------------------------
@click.group(name="invoices")
def invoices_group() -> None:
    """Invoices: list, show, issue the due ones now, void, download the PDF."""


@invoices_group.command(name="list")
@click.option("--platform", "platform_id", type=click.UUID, default=None, help="With --account: one account's.")
@click.option("--account", "external_id", default=None, help="The account's external id.")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@json_option
def list_invoices(platform_id: uuid.UUID | None, external_id: str | None, limit: int, as_json: bool) -> None:
    """Invoices, newest first."""

    async def work(_: Runtime, session: AsyncSession) -> list[dict[str, str]]:
        account_id = None
        if platform_id is not None and external_id is not None:
            account_id = (await accounts.get_account(session, platform_id, external_id)).id
        rows = await invoices.list_invoices(session, account_id=account_id, limit=limit)
        return [
            {
                "number": r.number,
                "status": r.status,
                "total": f"{r.total} {r.currency}",
                "period": r.period_start.date().isoformat(),
            }
            for r in rows
        ]

    emit_list(
        run_with_session(work, as_json=as_json),
        as_json=as_json,
        things="invoices",
        row=lambda row: f"{row['number']:14} {row['status']:6} {row['total']:>18}  {row['period']}",
        limit=limit,
    )


@invoices_group.command()
@number_argument
@json_option
def show(number: str, as_json: bool) -> None:
    """One invoice with its lines, totals, payments and credit notes."""

    async def work(runtime: Runtime, session: AsyncSession) -> InvoiceOut:
        return await _invoice_out(runtime, session, number)

    emit(model_payload(run_with_session(work, as_json=as_json)), as_json=as_json)


@invoices_group.command()
@json_option
def issue(as_json: bool) -> None:
    """Issue every due invoice now (what the scheduled job does; running it twice issues nothing twice)."""

    async def work(runtime: Runtime, session: AsyncSession) -> int:
        return await invoices.issue_due_invoices(
            session, now=runtime.clock(), terms=invoices.IssuingTerms.of(runtime.settings)
        )

    count = run_with_session(work, as_json=as_json)
    emit({"issued": count}, as_json=as_json, human=f"issued {count} invoice(s)")


@invoices_group.command()
@number_argument
@click.option("--reason", required=True, help="Why (kept with the invoice and in the audit log).")
@json_option
def void(number: str, reason: str, as_json: bool) -> None:
    """Void an open invoice (a paid one is corrected by a refund and its credit note)."""

    async def work(runtime: Runtime, session: AsyncSession) -> InvoiceOut:
        await invoices.void_invoice(session, actor=cli_actor(), number=number, reason=reason, now=runtime.clock())
        return await _invoice_out(runtime, session, number)

    emit(model_payload(run_with_session(work, as_json=as_json)), as_json=as_json)


@invoices_group.command()
@number_argument
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True)
@json_option
def pdf(number: str, output: Path, as_json: bool) -> None:
    """Write the invoice's PDF to a file."""

    async def work(runtime: Runtime, session: AsyncSession) -> bytes:
        _, content = await invoice_pdf(
            session, number=number, account_id=None, issuer=runtime.settings.invoice_issuer, now=runtime.clock()
        )
        return content

    content = run_with_session(work, as_json=as_json)
    output.write_bytes(content)
    emit({"file": str(output), "bytes": len(content)}, as_json=as_json, human=f"wrote {output}")


# -- payments (the manual provider) ------------------------------------------------------------------------------
@click.group(name="payments")
def payments_group() -> None:
    """Manual payments: record what arrived, refund, record a failed attempt."""


idempotency_option = click.option(
    "--idempotency-key", default=None, help="Makes a retry a no-op (default: a new random key)."
)


@payments_group.command()
@number_argument
@click.option("--amount", required=True, help="In the invoice's currency, e.g. 489.00.")
@click.option("--reference", default="", help="A bank reference, a cheque number ...")
@click.option("--note", default="")
@idempotency_option
@json_option
def record(number: str, amount: str, reference: str, note: str, idempotency_key: str | None, as_json: bool) -> None:
    """Record a payment; reaching the total marks the invoice paid and the subscription active."""
    value, key = _amount(amount), idempotency_key or f"cli-{uuid.uuid4().hex}"

    async def work(runtime: Runtime, session: AsyncSession) -> dict[str, object]:
        result = await payments.record_payment(
            session,
            provider=payments.MANUAL,
            number=number,
            amount=value,
            idempotency_key=key,
            actor=cli_actor(),
            now=runtime.clock(),
            reference=reference,
            note=note,
        )
        invoice = await _invoice_out(runtime, session, number)
        return {
            "payment": model_payload(_payment_out(result.payment)),
            "invoice": model_payload(invoice),
            "replayed": result.replayed,
        }

    written = run_with_session(work, as_json=as_json)
    invoice = written["invoice"]
    assert isinstance(invoice, dict)
    emit(
        written,
        as_json=as_json,
        human=f"recorded {value} on {number}: invoice {invoice['status']}, "
        f"due {invoice['amount_due']} {invoice['currency']}",
    )


@payments_group.command()
@number_argument
@click.option("--amount", required=True, help="How much to give back.")
@click.option("--reason", required=True, help="Printed on the credit note.")
@idempotency_option
@json_option
def refund(number: str, amount: str, reason: str, idempotency_key: str | None, as_json: bool) -> None:
    """Record a refund: a negative payment and a numbered credit note."""
    value, key = _amount(amount), idempotency_key or f"cli-{uuid.uuid4().hex}"

    async def work(runtime: Runtime, session: AsyncSession) -> dict[str, object]:
        result = await payments.record_refund(
            session,
            provider=payments.MANUAL,
            number=number,
            amount=value,
            idempotency_key=key,
            reason=reason,
            actor=cli_actor(),
            now=runtime.clock(),
            credit_note_prefix=runtime.settings.credit_note_number_prefix,
        )
        invoice = await _invoice_out(runtime, session, number)
        return {
            "payment": model_payload(_payment_out(result.payment)),
            "invoice": model_payload(invoice),
            "replayed": result.replayed,
        }

    written = run_with_session(work, as_json=as_json)
    emit(written, as_json=as_json, human=f"refunded {value} on {number}")


@payments_group.command()
@number_argument
@click.option("--reason", required=True)
@idempotency_option
@json_option
def fail(number: str, reason: str, idempotency_key: str | None, as_json: bool) -> None:
    """Record a failed payment attempt: payment.failed, and the subscription becomes past due."""
    key = idempotency_key or f"cli-{uuid.uuid4().hex}"

    async def work(runtime: Runtime, session: AsyncSession) -> dict[str, object]:
        result = await payments.record_failure(
            session,
            provider=payments.MANUAL,
            number=number,
            idempotency_key=key,
            reason=reason,
            actor=cli_actor(),
            now=runtime.clock(),
        )
        return {"payment": model_payload(_payment_out(result.payment)), "replayed": result.replayed}

    emit(run_with_session(work, as_json=as_json), as_json=as_json, human=f"recorded a failed payment on {number}")


@payments_group.command(name="list")
@number_argument
@json_option
def list_payments(number: str, as_json: bool) -> None:
    """The invoice's payments, refunds and failed attempts."""

    async def work(_: Runtime, session: AsyncSession) -> list[PaymentOut]:
        view = await invoices.get_invoice(session, number=number)
        return [_payment_out(p) for p in await payments.list_payments(session, view.invoice.id)]

    emit_list(
        run_with_session(work, as_json=as_json),
        as_json=as_json,
        things="payments",
        row=lambda row: (
            f"{timestamp_text(row.occurred_at)}  {row.kind:8} {row.amount:>12} {row.currency}  {row.provider}  "
            f"{row.reference}"
        ),
    )
