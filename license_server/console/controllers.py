"""The staff console's pages. Each handler parses the form, calls one service (the same the admin API calls) and
renders a template or redirects (303) to the page that shows the result.

Every route declares the admin API permission it needs (``needs``), the same one its API twin declares, or
``SIGNED_IN`` for pages any staff user may open; ``staff_guard`` refuses the rest and checks the CSRF token.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.params import FromPath, QueryParameter

from license_server.auth.audit import AuditFilter, page_audit_events
from license_server.auth.guards import needs
from license_server.auth.tokens import Permission
from license_server.billing.accounts import service as accounts
from license_server.billing.accounts.models import SubscriptionStatus
from license_server.billing.clocks.service import frozen_now_of
from license_server.billing.controllers import checked_external_id, checked_key
from license_server.billing.credits import service as credits
from license_server.billing.credits.burndown import CreditKind
from license_server.billing.invoices import rendering as invoice_rendering
from license_server.billing.invoices import service as invoices
from license_server.billing.invoices.calculation import ZERO, display_status, money_text
from license_server.billing.invoices.controllers import checked_number
from license_server.billing.invoices.models import Invoice
from license_server.billing.payments import service as payments
from license_server.billing.plans import service as billing_plans
from license_server.billing.state import BillingState
from license_server.billing.usage import service as usage
from license_server.console import charts, forms
from license_server.console import service as staff
from license_server.console.csrf import csrf_token, require_csrf
from license_server.console.sessions import (
    PRE_SESSION_COOKIE,
    SIGNED_IN_OPT,
    cleared_cookie,
    permissions_of,
    redirect,
    session_cookie,
    signed_in_cookie,
    staff_guard,
)
from license_server.console.templating import render
from license_server.dependencies import Db, RuntimeDep
from license_server.deployments import service as deployments
from license_server.errors import StaffSignInFailed, ValidationFailed
from license_server.events import webhooks
from license_server.events.service import EventType
from license_server.events.webhooks import DeliveryState
from license_server.licenses import service as licenses
from license_server.lifecycle.status import Status
from license_server.offline import service as offline
from license_server.runtime import Runtime

ACCOUNT_PATH = "/billing/platforms/{platform_id:uuid}/accounts/{external_id:str}"
INVOICES_SHOWN = 24  # two years of monthly invoices; the admin API pages through all of them


@dataclass(frozen=True)
class InvoiceRow:
    invoice: Invoice
    status: str  # as shown: billing/invoices' display rule (past_due for an open invoice due by now)
    paid: Decimal


PAGE_SIZE = 50
DASHBOARD_ROWS = 10
EXPIRING_WITHIN = timedelta(days=30)
SIGNED_IN = {SIGNED_IN_OPT: True}
# Query strings are bounded like the API's.
Query = Annotated[str | None, QueryParameter(max_length=200)]


def _billing(request: Request[Any, Any, Any]) -> BillingState:
    state: BillingState = request.app.state.runtime.billing
    return state


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _cursor_parts(after: str) -> tuple[datetime, uuid.UUID]:
    """A page cursor in a link: ``<microseconds since the epoch>_<id>``, URL-safe and exact (no float, no "+")."""
    micros, _, ident = after.partition("_")
    try:
        return _EPOCH + timedelta(microseconds=int(micros)), uuid.UUID(ident)
    except (ValueError, OverflowError) as exc:
        raise ValidationFailed("after must be a page cursor from a link", field="after") from exc


def _license_cursor(after: str | None) -> licenses.LicenseCursor | None:
    return licenses.LicenseCursor(*_cursor_parts(after)) if after else None


def _account_cursor(after: str | None) -> accounts.AccountCursor | None:
    return accounts.AccountCursor(*_cursor_parts(after)) if after else None


def _cursor_text(cursor: licenses.LicenseCursor | accounts.AccountCursor | None) -> str | None:
    if cursor is None:
        return None
    delta = cursor.created_at - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return f"{micros}_{cursor.id.hex}"


def _status_filter(value: str | None) -> Status | None:
    if not value:
        return None
    try:
        return Status(value)
    except ValueError as exc:
        raise ValidationFailed("status must be one of " + ", ".join(s.value for s in Status), field="status") from exc


class SignInController(Controller):
    """Sign-in is the one console route without a session; its form carries a pre-session CSRF token."""

    path = "/console"
    include_in_schema = False

    @staticmethod
    def _form(
        request: Request[Any, Any, Any], runtime: Runtime, *, email: str = "", error: str | None = None
    ) -> Response[str]:
        pre = request.cookies.get(PRE_SESSION_COOKIE) or secrets.token_urlsafe(24)
        request.state.csrf_token = csrf_token(runtime.hasher, f"pre:{pre}")
        response = render(request, "sign_in.html", status_code=401 if error else 200, error=error, email=email)
        response.set_cookie(session_cookie(request, PRE_SESSION_COOKIE, pre, max_age=3600))
        return response

    @get("/sign-in")
    async def form(self, request: Request[Any, Any, Any], runtime: RuntimeDep) -> Response[str]:
        return self._form(request, runtime)

    @post("/sign-in")
    async def sign_in(self, request: Request[Any, Any, Any], db: Db, runtime: RuntimeDep) -> Response[Any]:
        pre = request.cookies.get(PRE_SESSION_COOKIE, "")
        await require_csrf(request, runtime.hasher, f"pre:{pre}")
        form = await forms.read_form(request)
        email = forms.text(form, "email", max_length=320)
        try:
            signed_in = await staff.sign_in(
                db,
                runtime=runtime,
                email=email,
                password=forms.text(form, "password", max_length=1024),
                address=request.client.host if request.client else None,
                clock=runtime.clock,
            )
        except StaffSignInFailed as exc:  # the form again, with the problem in words and its code
            return self._form(request, runtime, email=email, error=f"{exc.detail} ({exc.code})")
        return redirect("/console", cookies=[signed_in_cookie(request, signed_in.cookie_secret)])


class StaffController(Controller):
    path = "/console"
    guards = [staff_guard]
    include_in_schema = False

    # -- session --------------------------------------------------------------------------------------------------
    @post("/sign-out", opt=SIGNED_IN)
    async def sign_out(self, request: Request[Any, Any, Any], db: Db, runtime: RuntimeDep) -> Response[None]:
        await staff.sign_out(db, session_id=request.state.staff_session_id, clock=runtime.clock)
        return redirect("/console/sign-in", cookies=[cleared_cookie(request)])

    @post("/sign-out-everywhere", opt=SIGNED_IN)
    async def sign_out_everywhere(self, request: Request[Any, Any, Any], db: Db, runtime: RuntimeDep) -> Response[None]:
        await staff.sign_out_everywhere(
            db, actor=request.state.actor, staff_user_id=request.state.staff_user_id, clock=runtime.clock
        )
        return redirect("/console/sign-in", cookies=[cleared_cookie(request)])

    # -- dashboard ------------------------------------------------------------------------------------------------
    @get("/", opt=SIGNED_IN)
    async def dashboard(self, request: Request[Any, Any, Any], db: Db, runtime: RuntimeDep) -> Response[str]:
        """What needs attention today; each section only for a role whose API may read it."""
        can = permissions_of(request)
        sections: dict[str, Any] = {}
        if Permission.READ in can:
            sections["expiring"] = await licenses.licenses_expiring_soon(
                db, within=EXPIRING_WITHIN, limit=DASHBOARD_ROWS, clock=runtime.clock
            )
            sections["quiet"] = await licenses.licenses_in_status(
                db, status=Status.LOST.value, limit=DASHBOARD_ROWS, clock=runtime.clock
            )
            sections["failed_deliveries"], _ = await webhooks.list_deliveries(
                db, state=DeliveryState.FAILED, limit=DASHBOARD_ROWS, offset=0
            )
            sections["over_limit"], _ = await webhooks.list_events(
                db, type=EventType.USAGE_OVER_LIMIT, limit=DASHBOARD_ROWS
            )
        if Permission.BILLING_READ in can:
            sections["past_due"] = await accounts.accounts_with_subscription_status(
                db, status=SubscriptionStatus.PAST_DUE, limit=DASHBOARD_ROWS
            )
        return render(request, "dashboard.html", can=can, sections=sections, now=runtime.clock())

    # -- customers ------------------------------------------------------------------------------------------------
    @get("/customers", opt=needs(Permission.READ))
    async def customers(self, request: Request[Any, Any, Any], db: Db, q: Query = None) -> Response[str]:
        query = (q or "")[:200]
        found = await licenses.search_customers(db, query=query, limit=PAGE_SIZE) if query else []
        return render(request, "customers.html", q=query, customers=found)

    @get("/customers/{customer_id:uuid}", opt=needs(Permission.READ))
    async def customer(
        self, request: Request[Any, Any, Any], db: Db, runtime: RuntimeDep, customer_id: FromPath[uuid.UUID]
    ) -> Response[str]:
        customer = await licenses.get_customer(db, customer_id)
        views, cursor = await licenses.page_licenses(db, limit=PAGE_SIZE, customer_id=customer_id, clock=runtime.clock)
        return render(
            request,
            "customer.html",
            customer=customer,
            licenses=views,
            next_after=_cursor_text(cursor),
        )

    # -- licenses -------------------------------------------------------------------------------------------------
    @get("/licenses", opt=needs(Permission.READ))
    async def license_list(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        runtime: RuntimeDep,
        status: Query = None,
        customer_id: Query = None,
        after: Query = None,
    ) -> Response[str]:
        chosen = _status_filter(status)
        views, cursor = await licenses.page_licenses(
            db,
            limit=PAGE_SIZE,
            after=_license_cursor(after),
            status=chosen.value if chosen else None,
            customer_id=forms.optional_uuid(customer_id, "customer_id"),
            clock=runtime.clock,
        )
        template = "licenses_rows.html" if request.headers.get("hx-request") else "licenses.html"
        return render(
            request,
            template,
            licenses=views,
            next_after=_cursor_text(cursor),
            status=chosen.value if chosen else "",
            customer_id=customer_id or "",
            statuses=[s.value for s in Status],
        )

    @get("/licenses/new", opt=needs(Permission.ISSUE_LICENSES))
    async def license_form(self, request: Request[Any, Any, Any], db: Db, customer_id: Query = None) -> Response[str]:
        plans, _ = await licenses.list_plans(db, limit=200, offset=0)
        chosen = forms.optional_uuid(customer_id, "customer_id")
        customer = await licenses.get_customer(db, chosen) if chosen else None
        return render(request, "license_new.html", plans=plans, customer=customer)

    @post("/licenses", opt=needs(Permission.ISSUE_LICENSES))
    async def issue(self, request: Request[Any, Any, Any], db: Db, runtime: RuntimeDep) -> Response[str]:
        form = await forms.read_form(request)
        customer_id = forms.optional_uuid(forms.text(form, "customer_id"), "customer_id")
        assert customer_id is not None  # text() required it
        issued = await licenses.issue_license(
            db,
            actor=request.state.actor,
            hasher=runtime.hasher,
            customer_id=customer_id,
            expires_at=forms.day_end(form, "expires_at"),
            plan_ref=forms.text(form, "plan", required=False, max_length=64) or None,
            notes=forms.text(form, "notes", required=False, max_length=2000),
            clock=runtime.clock,
        )
        return render(request, "license_key.html", view=issued.view, key=issued.key)

    @get("/licenses/{license_id:uuid}", opt=needs(Permission.READ))
    async def license_detail(
        self, request: Request[Any, Any, Any], db: Db, runtime: RuntimeDep, license_id: FromPath[uuid.UUID]
    ) -> Response[str]:
        view = await licenses.get_license(db, license_id, clock=runtime.clock)
        return render(
            request,
            "license.html",
            view=view,
            done=request.query_params.get("done", ""),
            renew_default=(view.license.expires_at + timedelta(days=365)).strftime("%Y-%m-%d"),
        )

    @post("/licenses/{license_id:uuid}/renew", opt=needs(Permission.ISSUE_LICENSES))
    async def renew(
        self, request: Request[Any, Any, Any], db: Db, runtime: RuntimeDep, license_id: FromPath[uuid.UUID]
    ) -> Response[None]:
        form = await forms.read_form(request)
        await licenses.renew_license(
            db,
            actor=request.state.actor,
            license_id=license_id,
            expires_at=forms.day_end(form, "expires_at"),
            clock=runtime.clock,
        )
        return redirect(f"/console/licenses/{license_id}?done=renewed")

    @post("/licenses/{license_id:uuid}/suspend", opt=needs(Permission.MANAGE_LICENSES))
    async def suspend(
        self, request: Request[Any, Any, Any], db: Db, runtime: RuntimeDep, license_id: FromPath[uuid.UUID]
    ) -> Response[None]:
        form = await forms.read_form(request)
        await licenses.suspend_license(
            db,
            actor=request.state.actor,
            license_id=license_id,
            reason=forms.text(form, "reason", required=False),
            clock=runtime.clock,
        )
        return redirect(f"/console/licenses/{license_id}?done=suspended")

    @post("/licenses/{license_id:uuid}/reinstate", opt=needs(Permission.MANAGE_LICENSES))
    async def reinstate(
        self, request: Request[Any, Any, Any], db: Db, runtime: RuntimeDep, license_id: FromPath[uuid.UUID]
    ) -> Response[None]:
        await licenses.reinstate_license(db, actor=request.state.actor, license_id=license_id, clock=runtime.clock)
        return redirect(f"/console/licenses/{license_id}?done=reinstated")

    @post("/licenses/{license_id:uuid}/revoke", opt=needs(Permission.MANAGE_LICENSES))
    async def revoke(
        self, request: Request[Any, Any, Any], db: Db, runtime: RuntimeDep, license_id: FromPath[uuid.UUID]
    ) -> Response[None]:
        form = await forms.read_form(request)
        await licenses.revoke_license(
            db,
            actor=request.state.actor,
            license_id=license_id,
            reason=forms.text(form, "reason", required=False),
            clock=runtime.clock,
        )
        return redirect(f"/console/licenses/{license_id}?done=revoked")

    @post("/licenses/{license_id:uuid}/rotate-key", opt=needs(Permission.MANAGE_LICENSES))
    async def rotate_key(
        self, request: Request[Any, Any, Any], db: Db, runtime: RuntimeDep, license_id: FromPath[uuid.UUID]
    ) -> Response[str]:
        issued = await licenses.rotate_license_key(
            db, actor=request.state.actor, hasher=runtime.hasher, license_id=license_id, clock=runtime.clock
        )
        return render(request, "license_key.html", view=issued.view, key=issued.key)

    @get("/licenses/{license_id:uuid}/document", opt=needs(Permission.ISSUE_LICENSES))
    async def document(self, db: Db, runtime: RuntimeDep, license_id: FromPath[uuid.UUID]) -> Response[str]:
        token = await deployments.license_document(
            db,
            signer=runtime.signer,
            issuer=runtime.settings.issuer,
            license_id=license_id,
            ttl=runtime.settings.document_ttl,
            clock=runtime.clock,
        )
        return Response(
            token,
            media_type="application/jose",
            headers={
                "Content-Disposition": f'attachment; filename="license-{license_id}.jws"',
                "Cache-Control": "no-store",
            },
        )

    # -- offline --------------------------------------------------------------------------------------------------
    @get("/offline", opt=needs(Permission.ISSUE_LICENSES))
    async def offline_form(self, request: Request[Any, Any, Any]) -> Response[str]:
        return render(request, "offline.html")

    @post("/offline", opt=needs(Permission.ISSUE_LICENSES))
    async def offline_answer(self, request: Request[Any, Any, Any], db: Db, runtime: RuntimeDep) -> Response[str]:
        """The uploaded activation request is answered with its license file, downloaded at once."""
        form = await forms.read_form(request)
        issued = await offline.respond(
            db,
            runtime=runtime,
            actor=request.state.actor,
            request=await forms.uploaded_bytes(form, "request_file"),
            clock=runtime.clock,
        )
        return Response(
            issued.text,
            media_type=MediaType.TEXT,
            headers={
                "Content-Disposition": f'attachment; filename="license-{issued.license_id}.lic"',
                "Cache-Control": "no-store",
            },
        )

    # -- plans ----------------------------------------------------------------------------------------------------
    @get("/plans", opt=needs(Permission.READ))
    async def plans(self, request: Request[Any, Any, Any], db: Db) -> Response[str]:
        rows, _ = await licenses.list_plans(db, limit=200, offset=0)
        return render(request, "plans.html", plans=rows)

    @get("/billing/plans", opt=needs(Permission.BILLING_READ))
    async def billing_plans(self, request: Request[Any, Any, Any], db: Db) -> Response[str]:
        rows = await billing_plans.list_billing_plans(db)
        return render(
            request,
            "billing_plans.html",
            plans=rows,
            done=request.query_params.get("done", ""),
        )

    @post("/billing/plans/{code:str}/quotas", opt=needs(Permission.BILLING_WRITE))
    async def edit_quotas(
        self, request: Request[Any, Any, Any], db: Db, runtime: RuntimeDep, code: FromPath[str]
    ) -> Response[None]:
        """New limits for a plan's quotas (blank: unlimited), imported as a one-plan catalogue like the API's."""
        form = await forms.read_form(request)
        plan = await licenses.resolve_plan(db, code)
        billing = dict(plan.billing)
        quotas = {key: dict(term) for key, term in billing.get("quotas", {}).items()}
        for key, term in quotas.items():
            term["limit"] = forms.whole_number(form, f"quota.{key}", required=False)
        catalogue = billing_plans.Catalogue.model_validate(
            {
                "plans": [
                    {
                        "code": plan.code,
                        "name": plan.name,
                        "description": plan.description,
                        "billing": {**billing, "quotas": quotas},
                    }
                ]
            }
        )
        await billing_plans.import_catalogue(db, actor=request.state.actor, catalogue=catalogue, clock=runtime.clock)
        _billing(request).forget_platforms()  # every cached account on this plan answers the new limits at once
        return redirect(f"/console/billing/plans?done={plan.code}")

    # -- billing accounts -----------------------------------------------------------------------------------------
    @get("/billing/accounts", opt=needs(Permission.BILLING_READ))
    async def account_list(self, request: Request[Any, Any, Any], db: Db, after: Query = None) -> Response[str]:
        rows, cursor = await accounts.page_accounts(db, limit=PAGE_SIZE, after=_account_cursor(after))
        return render(request, "accounts.html", accounts=rows, next_after=_cursor_text(cursor))

    @get(ACCOUNT_PATH, opt=needs(Permission.BILLING_READ))
    async def account_detail(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        runtime: RuntimeDep,
        platform_id: FromPath[uuid.UUID],
        external_id: FromPath[str],
    ) -> Response[str]:
        platform = await accounts.get_platform(db, platform_id)
        account = await accounts.get_account(db, platform_id, checked_external_id(external_id))
        frozen = await frozen_now_of(db, account.id)  # an account on a test clock lives on its time
        now = frozen or runtime.clock()
        snapshot = await accounts.load_snapshot(db, accounts.platform_snapshot(platform), account, test_now=frozen)
        report = await usage.limits_report(db, snapshot, now)
        balance = await credits.credit_balance(db, account_id=account.id, clock=runtime.clock)
        movements, _ = await credits.list_movements(db, account_id=account.id, limit=100, offset=0)
        history = await usage.usage_history(db, account.id, limit=500, offset=0)
        oldest_first = list(reversed(movements))
        burn_down = charts.running_balance(
            [(m.movement.occurred_at, m.movement.amount) for m in oldest_first],
            opening=balance.available - sum((m.movement.amount for m in movements), Decimal(0)),
        )
        daily = charts.daily_totals(
            [(r.created_at, r.amount) for r in history if r.refunded_at is None],
            first=(now - timedelta(days=29)).date(),
            last=now.date(),
        )
        plans = await billing_plans.list_billing_plans(db)
        issued = await invoices.list_invoices(db, account_id=account.id, limit=INVOICES_SHOWN)
        paid = await payments.payment_totals(db, [invoice.id for invoice in issued])
        return render(
            request,
            "account.html",
            invoices=[
                InvoiceRow(
                    invoice,
                    display_status(invoice.status, invoice.due_at, now),
                    paid.get(invoice.id, (ZERO, ZERO))[0],
                )
                for invoice in issued
            ],
            money=money_text,
            platform=platform,
            account=account,
            report=report,
            balance=balance,
            movements=movements,
            subscriptions=await accounts.list_subscriptions(db, account_id=account.id),
            overrides=await accounts.list_overrides(db, account.id),
            plans=plans,
            credit_kinds=[k.value for k in CreditKind],
            burn_down_svg=charts.line_chart(burn_down, title="Credit balance after each movement", chart_id="burn"),
            usage_svg=charts.bar_chart(daily, title="Usage per day, last 30 days", chart_id="usage"),
            daily=daily,
            done=request.query_params.get("done", ""),
            base=f"/console/billing/platforms/{platform_id}/accounts/{external_id}",
            idempotency_key=secrets.token_urlsafe(12),
        )

    @post(ACCOUNT_PATH + "/overrides", opt=needs(Permission.BILLING_WRITE))
    async def set_override(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        runtime: RuntimeDep,
        platform_id: FromPath[uuid.UUID],
        external_id: FromPath[str],
    ) -> Response[None]:
        form = await forms.read_form(request)
        await accounts.set_override(
            db,
            actor=request.state.actor,
            platform_id=platform_id,
            external_id=checked_external_id(external_id),
            key=checked_key(forms.text(form, "key", max_length=100)),
            limit=forms.whole_number(form, "limit", required=False),
            clock=runtime.clock,
        )
        await _billing(request).account_changed(platform_id, external_id)
        return redirect(f"/console/billing/platforms/{platform_id}/accounts/{external_id}?done=override")

    @post(ACCOUNT_PATH + "/credits", opt=needs(Permission.BILLING_WRITE))
    async def grant_credits(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        runtime: RuntimeDep,
        platform_id: FromPath[uuid.UUID],
        external_id: FromPath[str],
    ) -> Response[None]:
        """Idempotent by the form's key: a double-submitted form grants once."""
        form = await forms.read_form(request)
        raw_kind = forms.text(form, "kind", max_length=16)
        try:
            kind = CreditKind(raw_kind)
        except ValueError as exc:
            raise ValidationFailed("kind must be included, promotional or prepaid", field="kind") from exc
        account = await accounts.get_account(db, platform_id, checked_external_id(external_id))
        account_id = account.id  # read now: the grant's transaction begins with a rollback, which expires objects
        await credits.grant_credits(
            db,
            state=_billing(request),
            actor=request.state.actor,
            account_id=account_id,
            kind=kind,
            amount=forms.decimal_amount(form, "amount"),
            idempotency_key=forms.text(form, "idempotency_key", max_length=200),
            expires_at=forms.optional_day_end(form, "expires_at"),
            description=forms.text(form, "description", required=False),
            clock=runtime.clock,
        )
        return redirect(f"/console/billing/platforms/{platform_id}/accounts/{external_id}?done=credits")

    @post(ACCOUNT_PATH + "/plan", opt=needs(Permission.BILLING_WRITE))
    async def change_plan(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        runtime: RuntimeDep,
        platform_id: FromPath[uuid.UUID],
        external_id: FromPath[str],
    ) -> Response[None]:
        form = await forms.read_form(request)
        await accounts.change_plan(
            db,
            actor=request.state.actor,
            platform_id=platform_id,
            external_id=checked_external_id(external_id),
            plan=forms.text(form, "plan", max_length=64),
            clock=runtime.clock,
            state=_billing(request),
        )
        await _billing(request).account_changed(platform_id, external_id)
        return redirect(f"/console/billing/platforms/{platform_id}/accounts/{external_id}?done=plan")

    # -- the account's invoices and manual payments ---------------------------------------------------------------
    @get(ACCOUNT_PATH + "/invoices/{number:str}/pdf", opt=needs(Permission.BILLING_READ))
    async def invoice_pdf(
        self,
        db: Db,
        runtime: RuntimeDep,
        platform_id: FromPath[uuid.UUID],
        external_id: FromPath[str],
        number: FromPath[str],
    ) -> Response[bytes]:
        account = await accounts.get_account(db, platform_id, checked_external_id(external_id))
        found, content = await invoice_rendering.invoice_pdf(
            db,
            number=checked_number(number),
            account_id=account.id,  # another account's invoice under this account's page reads as not found
            issuer=runtime.settings.invoice_issuer,
            now=runtime.clock(),
        )
        return Response(
            content,
            media_type="application/pdf",
            headers={"Content-Disposition": f'attachment; filename="{found}.pdf"', "Cache-Control": "no-store"},
        )

    @post(ACCOUNT_PATH + "/invoices/{number:str}/payments", opt=needs(Permission.BILLING_WRITE))
    async def record_payment(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        runtime: RuntimeDep,
        platform_id: FromPath[uuid.UUID],
        external_id: FromPath[str],
        number: FromPath[str],
    ) -> Response[None]:
        """Money that arrived by bank transfer or cheque (the manual provider), idempotent by the form's key: a
        double-submitted form records it once."""
        form = await forms.read_form(request)
        account = await accounts.get_account(db, platform_id, checked_external_id(external_id))
        view = await invoices.get_invoice(db, number=checked_number(number), account_id=account.id)
        await payments.record_payment(
            db,
            provider=payments.MANUAL,
            number=view.invoice.number,
            amount=forms.decimal_amount(form, "amount"),
            idempotency_key=forms.text(form, "idempotency_key", max_length=200),
            actor=request.state.actor,
            now=runtime.clock(),
            reference=forms.text(form, "reference", required=False, max_length=200),
            note=forms.text(form, "note", required=False),
        )
        # a payment may move the subscription's status; every replica drops the account's snapshot
        await _billing(request).account_changed(platform_id, external_id)
        return redirect(f"/console/billing/platforms/{platform_id}/accounts/{external_id}?done=payment")

    # -- webhooks and audit ---------------------------------------------------------------------------------------
    @get("/webhooks", opt=needs(Permission.READ))
    async def webhook_list(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        delivery_state: Annotated[str | None, QueryParameter(name="state", max_length=20)] = None,
    ) -> Response[str]:
        try:
            chosen = DeliveryState(delivery_state) if delivery_state else None
        except ValueError as exc:
            raise ValidationFailed("state must be pending, succeeded or failed", field="state") from exc
        endpoints, _ = await webhooks.list_endpoints(db, limit=200, offset=0)
        deliveries, _ = await webhooks.list_deliveries(db, state=chosen, limit=PAGE_SIZE, offset=0)
        return render(
            request,
            "webhooks.html",
            endpoints=endpoints,
            deliveries=deliveries,
            state=chosen.value if chosen else "",
            done=request.query_params.get("done", ""),
        )

    @post("/webhooks/deliveries/{delivery_id:uuid}/redeliver", opt=needs(Permission.MANAGE_WEBHOOKS))
    async def redeliver(
        self, request: Request[Any, Any, Any], db: Db, runtime: RuntimeDep, delivery_id: FromPath[uuid.UUID]
    ) -> Response[None]:
        await webhooks.redeliver(db, actor=request.state.actor, delivery_id=delivery_id, clock=runtime.clock)
        return redirect("/console/webhooks?done=redelivered")

    @get("/audit", opt=needs(Permission.READ_AUDIT))
    async def audit(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        action: Query = None,
        before: Annotated[int | None, QueryParameter(ge=1, le=2**62)] = None,
    ) -> Response[str]:
        rows, next_before = await page_audit_events(
            db, filters=AuditFilter(action=(action or None) and action[:64]), limit=PAGE_SIZE, before_id=before
        )
        return render(request, "audit.html", events=rows, action=action or "", next_before=next_before)
