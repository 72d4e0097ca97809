"""Invoices over HTTP: the platform reads its accounts' invoices, previews and PDFs and asks for payment links
(platform secret); staff also void, issue now and preview any account (admin token). Thin: parse, call, serialise."""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, JSONBody, QueryParameter

from license_server.auth.guards import CurrentActor, needs
from license_server.auth.tokens import Permission
from license_server.billing.accounts import service as accounts
from license_server.billing.controllers import (
    PLATFORM_ERRORS,
    PLATFORM_PREFIX,
    account_of_request,
    authenticate_platform,
    billing_state,
    checked_external_id,
)
from license_server.billing.invoices import service
from license_server.billing.invoices.calculation import ZERO
from license_server.billing.invoices.document import invoice_document, preview_document
from license_server.billing.invoices.models import Invoice, InvoiceStatus
from license_server.billing.invoices.rendering import invoice_pdf
from license_server.billing.invoices.schemas import (
    InvoiceNumber,
    InvoiceOut,
    InvoiceSummaryOut,
    IssuedOut,
    LinkOut,
    VoidIn,
)
from license_server.billing.payments import service as payments
from license_server.billing.payments.providers import PaymentProvider
from license_server.billing.payments.stripe_provider import StripeProvider
from license_server.billing.schemas import DataOut
from license_server.dependencies import Db, Limit, Offset, RuntimeDep
from license_server.errors import ValidationFailed
from license_server.schemas_common import problem_spec

_NUMBER = re.compile(r"^[A-Z0-9-]{1,32}$")
_PDF_SUFFIX = ".pdf"
_LINK_ERRORS = {
    409: problem_spec(
        "invoice_state_conflict: the invoice is not open (paid or void); payment_provider_not_configured: no Stripe"
    ),
    503: problem_spec("payment_provider_unavailable: Stripe could not be reached"),
}
StatusFilter = Annotated[InvoiceStatus | None, QueryParameter(name="status")]


def checked_number(value: str) -> str:
    if not _NUMBER.match(value):
        raise ValidationFailed("an invoice number is 1-32 capital letters, digits and dashes", field="number")
    return value


async def invoice_out(db: Db, view: service.InvoiceView, *, issuer: str) -> InvoiceOut:
    paid, refunded = (await payments.payment_totals(db, [view.invoice.id])).get(view.invoice.id, (ZERO, ZERO))
    return InvoiceOut.model_validate(invoice_document(view, issuer=issuer, paid=paid, refunded=refunded).as_json())


def summary_out(invoice: Invoice) -> InvoiceSummaryOut:
    return InvoiceSummaryOut(
        id=invoice.id,
        number=invoice.number,
        status=invoice.status,
        account_id=invoice.account_id,
        subscription_id=invoice.subscription_id,
        plan_code=invoice.plan_code,
        currency=invoice.currency,
        total=format(invoice.total, "f"),
        period_start=invoice.period_start,
        period_end=invoice.period_end,
        issued_at=invoice.issued_at,
        due_at=invoice.due_at,
    )


def pdf_response(number: str, content: bytes) -> Response[bytes]:
    return Response(
        content,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{number}.pdf"'},
    )


def stripe_provider(runtime: Any) -> PaymentProvider:
    return StripeProvider(runtime.settings)


async def _previews(
    db: Db, *, account_id: uuid.UUID, platform: str, external_id: str, runtime: Any
) -> list[InvoiceOut]:
    previews = await service.preview_invoices(db, account_id=account_id, now=runtime.clock())
    issuer = runtime.settings.invoice_issuer
    return [
        InvoiceOut.model_validate(
            preview_document(p, issuer=issuer, platform=platform, external_id=external_id).as_json()
        )
        for p in previews
    ]


class PlatformInvoicesController(Controller):
    """An account's invoices, for the platform to show its users (seed 002's Invoices tab)."""

    path = PLATFORM_PREFIX + "/accounts/{external_id:str}"
    tags = ["billing (platform API)"]
    guards = [authenticate_platform]

    @get("/invoices", summary="The account's invoices, newest first", responses=PLATFORM_ERRORS)
    async def list_invoices(
        self,
        request: Request[Any, Any, Any],
        external_id: FromPath[str],
        db: Db,
        status_filter: StatusFilter = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> DataOut:
        _, snapshot = await account_of_request(request, external_id)
        rows = await service.list_invoices(
            db, account_id=snapshot.account_id, status=status_filter, limit=limit, offset=offset
        )
        return DataOut(data={"invoices": [summary_out(r).model_dump(mode="json") for r in rows]})

    @get(
        "/invoices/preview",
        summary="The next invoice of each subscription, on the usage so far (nothing is written)",
        responses=PLATFORM_ERRORS,
    )
    async def preview(
        self, request: Request[Any, Any, Any], external_id: FromPath[str], db: Db, runtime: RuntimeDep
    ) -> DataOut:
        _, snapshot = await account_of_request(request, external_id)
        drafts = await _previews(
            db,
            account_id=snapshot.account_id,
            platform=snapshot.platform.name,
            external_id=snapshot.external_id,
            runtime=runtime,
        )
        return DataOut(data={"invoices": [d.model_dump(mode="json") for d in drafts]})

    @get(
        "/invoices/{name:str}",
        summary="One invoice as JSON; `{number}.pdf` gives its PDF",
        responses={**PLATFORM_ERRORS, 404: problem_spec("invoice_not_found")},
    )
    async def show(
        self,
        request: Request[Any, Any, Any],
        external_id: FromPath[str],
        name: FromPath[str],
        db: Db,
        runtime: RuntimeDep,
    ) -> Any:
        _, snapshot = await account_of_request(request, external_id)
        issuer = runtime.settings.invoice_issuer
        if name.endswith(_PDF_SUFFIX):
            number, content = await invoice_pdf(
                db,
                number=checked_number(name.removesuffix(_PDF_SUFFIX)),
                account_id=snapshot.account_id,
                issuer=issuer,
                now=runtime.clock(),
            )
            return pdf_response(number, content)
        view = await service.get_invoice(db, number=checked_number(name), account_id=snapshot.account_id)
        return DataOut(data=(await invoice_out(db, view, issuer=issuer)).model_dump(mode="json"))

    @post(
        "/invoices/{number:str}/payment-link",
        summary="A Stripe Checkout link that pays what is left of an open invoice",
        status_code=200,
        responses={**PLATFORM_ERRORS, **_LINK_ERRORS},
    )
    async def payment_link(
        self,
        request: Request[Any, Any, Any],
        external_id: FromPath[str],
        number: FromPath[str],
        db: Db,
        runtime: RuntimeDep,
    ) -> DataOut:
        _, snapshot = await account_of_request(request, external_id)
        provider = stripe_provider(runtime)
        link = await payments.create_payment_link(
            db, provider, number=checked_number(number), account_id=snapshot.account_id, now=runtime.clock()
        )
        return DataOut(data=LinkOut(url=link.url, provider=provider.name, provider_id=link.provider_id).model_dump())

    @post(
        "/billing-portal",
        summary="A Stripe customer portal link (payment methods, charge history)",
        status_code=200,
        responses={**PLATFORM_ERRORS, **_LINK_ERRORS},
    )
    async def portal_link(
        self, request: Request[Any, Any, Any], external_id: FromPath[str], db: Db, runtime: RuntimeDep
    ) -> DataOut:
        _, snapshot = await account_of_request(request, external_id)
        provider = stripe_provider(runtime)
        link = await payments.create_portal_link(db, provider, account_id=snapshot.account_id)
        return DataOut(data=LinkOut(url=link.url, provider=provider.name, provider_id=link.provider_id).model_dump())


class InvoicesAdminController(Controller):
    """Staff: every invoice; void, issue now, preview, PDFs."""

    path = "/v1/admin/billing"
    tags = ["billing (admin)"]

    @get(
        "/invoices",
        summary="Invoices, newest first (of one account with platform_id and external_id)",
        opt=needs(Permission.BILLING_READ),
    )
    async def list_invoices(
        self,
        db: Db,
        platform_id: Annotated[uuid.UUID | None, QueryParameter()] = None,
        external_id: Annotated[str | None, QueryParameter()] = None,
        status_filter: StatusFilter = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> list[InvoiceSummaryOut]:
        account_id = None
        if (platform_id is None) != (external_id is None):
            raise ValidationFailed("give platform_id and external_id together", field="external_id")
        if platform_id is not None and external_id is not None:
            account_id = (await accounts.get_account(db, platform_id, checked_external_id(external_id))).id
        rows = await service.list_invoices(db, account_id=account_id, status=status_filter, limit=limit, offset=offset)
        return [summary_out(r) for r in rows]

    @get("/invoices/{number:str}", summary="One invoice", opt=needs(Permission.BILLING_READ))
    async def show(self, db: Db, number: FromPath[InvoiceNumber], runtime: RuntimeDep) -> InvoiceOut:
        view = await service.get_invoice(db, number=checked_number(number))
        return await invoice_out(db, view, issuer=runtime.settings.invoice_issuer)

    @get("/invoices/{number:str}/pdf", summary="One invoice's PDF", opt=needs(Permission.BILLING_READ))
    async def pdf(self, db: Db, number: FromPath[str], runtime: RuntimeDep) -> Response[bytes]:
        found, content = await invoice_pdf(
            db,
            number=checked_number(number),
            account_id=None,
            issuer=runtime.settings.invoice_issuer,
            now=runtime.clock(),
        )
        return pdf_response(found, content)

    @post(
        "/invoices/{number:str}/void",
        summary="Void an open invoice (idempotent); a paid one is corrected by a refund's credit note",
        status_code=200,
        opt=needs(Permission.BILLING_WRITE),
    )
    async def void(
        self, db: Db, actor: CurrentActor, number: FromPath[str], data: JSONBody[VoidIn], runtime: RuntimeDep
    ) -> InvoiceOut:
        view = await service.void_invoice(
            db, actor=actor, number=checked_number(number), reason=data.reason, now=runtime.clock()
        )
        return await invoice_out(db, view, issuer=runtime.settings.invoice_issuer)

    @post(
        "/invoices/{number:str}/payment-link",
        summary="A Stripe Checkout link for an open invoice",
        status_code=200,
        opt=needs(Permission.BILLING_WRITE),
        responses=_LINK_ERRORS,
    )
    async def payment_link(self, db: Db, number: FromPath[str], runtime: RuntimeDep) -> LinkOut:
        provider = stripe_provider(runtime)
        link = await payments.create_payment_link(
            db, provider, number=checked_number(number), account_id=None, now=runtime.clock()
        )
        return LinkOut(url=link.url, provider=provider.name, provider_id=link.provider_id)

    @get(
        "/platforms/{platform_id:uuid}/accounts/{external_id:str}/invoices/preview",
        summary="The account's next invoices on the usage so far (nothing is written)",
        opt=needs(Permission.BILLING_READ),
    )
    async def preview(
        self, db: Db, platform_id: FromPath[uuid.UUID], external_id: FromPath[str], runtime: RuntimeDep
    ) -> list[InvoiceOut]:
        platform = await accounts.get_platform(db, platform_id)
        account = await accounts.get_account(db, platform_id, checked_external_id(external_id))
        return await _previews(
            db, account_id=account.id, platform=platform.name, external_id=account.external_id, runtime=runtime
        )

    @post(
        "/platforms/{platform_id:uuid}/accounts/{external_id:str}/invoices/issue",
        summary="Issue the account's due invoices now (what the scheduled job does; idempotent)",
        status_code=200,
        opt=needs(Permission.BILLING_WRITE),
    )
    async def issue_now(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        platform_id: FromPath[uuid.UUID],
        external_id: FromPath[str],
        runtime: RuntimeDep,
    ) -> IssuedOut:
        account = await accounts.get_account(db, platform_id, checked_external_id(external_id))
        account_id = account.id
        issued = await service.issue_due_invoices(
            db,
            now=billing_state(request).clock(),
            account_ids=[account_id],
            terms=service.IssuingTerms.of(runtime.settings),
        )
        rows = await service.list_invoices(db, account_id=account_id, limit=max(issued, 1))
        return IssuedOut(issued=issued, invoices=[summary_out(r) for r in rows[:issued]])
