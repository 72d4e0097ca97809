"""The customer portal: the routes that make portal links (platform API, admin API) and the portal's pages.

Thin, like every controller here: check who is asking, call one service function, render. The pages' guard finds
the session, checks the route's portal permission (a route that declares none is refused: fail closed) and puts
the session's CSRF token in the page; every unsafe request must carry it back. A refused or failed page shows the
problem code and detail the API would give, in words.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

from litestar import Controller, MediaType, Request, Response, Router, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import UploadFile
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.response import Redirect
from litestar.static_files import create_static_files_router
from pydantic import BaseModel

from license_server.auth.guards import CurrentActor, authorize, needs
from license_server.auth.tokens import Actor, Permission, Role
from license_server.billing.accounts import service as accounts
from license_server.billing.controllers import (
    PLATFORM_ERRORS,
    PLATFORM_PREFIX,
    account_of_request,
    authenticate_platform,
    checked_external_id,
)
from license_server.billing.credits.schemas import credits_text
from license_server.billing.invoices.calculation import money_text
from license_server.billing.usage.breakdown import BreakdownBy
from license_server.console.charts import Point, bar_chart
from license_server.console.csrf import csrf_token, require_csrf
from license_server.console.portal import service
from license_server.console.portal.interfaces import PORTAL_STATE_KEY, PortalServices
from license_server.console.portal.models import PortalRole
from license_server.console.portal.schemas import PortalLinkIn, PortalLinkOut
from license_server.console.portal.service import PortalPermission, PortalVisitor
from license_server.console.portal.views import LimitState, price_text, quota_cell
from license_server.console.sessions import session_cookie
from license_server.console.templating import render
from license_server.dependencies import Db, RuntimeDep
from license_server.errors import (
    Conflict,
    NotFound,
    PermissionDenied,
    UnsupportedMediaType,
    ValidationFailed,
)
from license_server.http_wiring import EXCEPTION_HANDLERS
from license_server.runtime import Runtime

PORTAL_PREFIX = "/portal"
COOKIE = "ls_portal"
PERMISSION_OPT = "portal_permission"
ANY_VISITOR = "any_visitor"  # the home page and sign-out: every session, whatever its role
MAX_REQUEST_FILE_BYTES = 64 * 1024  # an activation request is well under 2 KiB
PAGE_SIZE = 50
Offset = Annotated[int, QueryParameter(ge=0, le=10_000_000)]
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _services(connection: ASGIConnection[Any, Any, Any, Any]) -> PortalServices:
    services = connection.app.state.get(PORTAL_STATE_KEY)
    return services if isinstance(services, PortalServices) else PortalServices()


def _link_out(request: Request[Any, Any, Any], created: service.CreatedLink) -> PortalLinkOut:
    # The URL is built on the address the caller reached this server by; behind a proxy, its forwarded address.
    base = str(request.base_url).rstrip("/")
    link = created.link
    return PortalLinkOut(
        url=base + created.path,
        expires_at=link.expires_at,
        role=PortalRole(link.role),
        link_id=link.id,
        account_id=link.account_id,
        customer_id=link.customer_id,
    )


# -- making links --------------------------------------------------------------------------------------------------
class PortalLinkPlatformController(Controller):
    """A hosted platform makes a portal link for one of its billing accounts (its ``external_id``)."""

    path = PLATFORM_PREFIX + "/accounts/{external_id:str}/portal-sessions"
    tags = ["billing (platform API)"]
    guards = [authenticate_platform]

    @post(
        "/",
        status_code=201,
        summary="A one-time link (valid 10 minutes) that opens the customer's billing pages with the given role",
        responses=PLATFORM_ERRORS,
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        external_id: FromPath[str],
        db: Db,
        runtime: RuntimeDep,
        data: JSONBody[PortalLinkIn],
    ) -> PortalLinkOut:
        _, snapshot = await account_of_request(request, external_id)
        actor = Actor(name=f"platform:{snapshot.platform.id}", role=Role.BILLING)
        created = await service.create_link(
            db,
            hasher=runtime.hasher,
            actor=actor,
            role=data.role,
            account_id=snapshot.account_id,
            payment_url=data.payment_url,
            clock=runtime.clock,
        )
        return _link_out(request, created)


class PortalLinkAdminController(Controller):
    """Vendor staff make a portal link for a billing account or for a (self-hosted) customer. Mounted under the
    admin router, whose guard checks each route's permission."""

    path = "/v1/admin"
    tags = ["portal (admin)"]

    @post(
        "/billing/platforms/{platform_id:uuid}/accounts/{external_id:str}/portal-sessions",
        status_code=201,
        summary="A one-time link to the account's billing pages, for the given customer role",
        opt=needs(Permission.BILLING_WRITE),
    )
    async def create_for_account(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        runtime: RuntimeDep,
        actor: CurrentActor,
        platform_id: FromPath[uuid.UUID],
        external_id: FromPath[str],
        data: JSONBody[PortalLinkIn],
    ) -> PortalLinkOut:
        account = await accounts.get_account(db, platform_id, checked_external_id(external_id))
        created = await service.create_link(
            db,
            hasher=runtime.hasher,
            actor=actor,
            role=data.role,
            account_id=account.id,
            payment_url=data.payment_url,
            clock=runtime.clock,
        )
        return _link_out(request, created)

    @post(
        "/customers/{customer_id:uuid}/portal-sessions",
        status_code=201,
        summary="A one-time link to a self-hosted customer's licenses, for the given customer role",
        opt=needs(Permission.ISSUE_LICENSES),
    )
    async def create_for_customer(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        runtime: RuntimeDep,
        actor: CurrentActor,
        customer_id: FromPath[uuid.UUID],
        data: JSONBody[PortalLinkIn],
    ) -> PortalLinkOut:
        created = await service.create_link(
            db,
            hasher=runtime.hasher,
            actor=actor,
            role=data.role,
            customer_id=customer_id,
            payment_url=data.payment_url,
            clock=runtime.clock,
        )
        return _link_out(request, created)


# -- the pages' plumbing -------------------------------------------------------------------------------------------
def _runtime(connection: ASGIConnection[Any, Any, Any, Any]) -> Runtime:
    runtime: Runtime = connection.app.state.runtime
    return runtime


def portal_page(permission: PortalPermission | str) -> dict[str, Any]:
    return {PERMISSION_OPT: permission}


async def portal_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Find the visitor by the session cookie and check the route's permission (seed 002: members see no billing)."""
    runtime = _runtime(connection)
    async with runtime.session_factory() as session:
        visitor = await service.visitor_of(
            session, hasher=runtime.hasher, cookie=connection.cookies.get(COOKIE), clock=runtime.clock
        )
    connection.state.portal_visitor = visitor
    connection.state.csrf_token = csrf_token(runtime.hasher, str(visitor.session_id))
    permission = handler.opt.get(PERMISSION_OPT)
    if permission == ANY_VISITOR:
        return
    if not isinstance(permission, PortalPermission) or not visitor.can(permission):
        raise PermissionDenied(
            f"your role ({visitor.role.value}) may not "
            + ("see the billing pages" if permission == PortalPermission.VIEW_BILLING else "use this page")
        )
    if not visitor.has_pages_of(permission):
        raise NotFound("this page is not part of your portal (it is for " + _other_subject(visitor) + ")")


def _other_subject(visitor: PortalVisitor) -> str:
    return "a self-hosted customer's licenses" if visitor.account_id is not None else "a hosted billing account"


async def _forms_only(request: Request[Any, Any, Any]) -> None:
    """The pages take forms, not JSON (this replaces the API's JSON-only body rule on the portal's routes)."""
    unsafe = request.method in {"POST", "PUT", "PATCH", "DELETE"}
    if unsafe and await request.body() and not request.headers.get("content-type", "").startswith(_FORM_TYPES):
        raise UnsupportedMediaType("send the page's form", field="content-type")


async def _forms_with_csrf(request: Request[Any, Any, Any]) -> None:
    await _forms_only(request)
    visitor: PortalVisitor = request.state.portal_visitor
    await require_csrf(request, _runtime(request).hasher, str(visitor.session_id))


def _problem_page(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """The page for a failure: the status, code, title and detail the API's one mapping gives for it, in words."""
    handler = next(EXCEPTION_HANDLERS[kind] for kind in type(exc).__mro__ if kind in EXCEPTION_HANDLERS)
    api: Response[Any] = handler(request, exc)
    content = api.content
    problem = content.model_dump(mode="json") if isinstance(content, BaseModel) else dict(content)
    status = api.status_code or 500
    return render(
        request,
        "portal/problem.html",
        status_code=status,
        status=status,
        code=problem.get("code", "internal_error"),
        detail=problem.get("detail", ""),
        title=problem.get("title", "Error"),
    )


# Litestar picks the handler of the closest exception type across layers: every type the API maps is mapped here.
PAGE_EXCEPTION_HANDLERS: dict[Any, Any] = dict.fromkeys(EXCEPTION_HANDLERS, _problem_page)


def _visitor(request: Request[Any, Any, Any]) -> PortalVisitor:
    visitor: PortalVisitor = request.state.portal_visitor
    return visitor


def _page(request: Request[Any, Any, Any], template: str, **context: Any) -> Response[Any]:
    visitor = _visitor(request)
    response = render(
        request,
        f"portal/{template}",
        visitor=visitor,
        can=visitor.can,
        permissions=PortalPermission,
        **context,
    )
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


# -- starting a session ---------------------------------------------------------------------------------------------
class PortalStartController(Controller):
    """Opening a link shows a page with one button; pressing it spends the link. Link scanners and previews that
    fetch every URL in an email (a GET) therefore cannot use up the customer's one-time link."""

    path = PORTAL_PREFIX + "/start"
    include_in_schema = False
    before_request = staticmethod(_forms_only)
    exception_handlers = PAGE_EXCEPTION_HANDLERS

    @get("/{token:str}")
    async def show(
        self, request: Request[Any, Any, Any], db: Db, runtime: RuntimeDep, token: FromPath[str]
    ) -> Response[Any]:
        await service.check_link(db, hasher=runtime.hasher, token=token, clock=runtime.clock)
        response = render(request, "portal/start.html", token=token, visitor=None)
        response.headers["Referrer-Policy"] = "no-referrer"  # the token is in this page's URL
        return response

    @post("/", status_code=303)
    async def start(self, request: Request[Any, Any, Any], db: Db, runtime: RuntimeDep) -> Response[Any]:
        token = (await request.form()).get("token")
        started = await service.redeem_link(
            db, hasher=runtime.hasher, token=token if isinstance(token, str) else "", clock=runtime.clock
        )
        response: Response[Any] = Redirect(PORTAL_PREFIX + "/", status_code=303)
        # HttpOnly, and Secure unless on plain http to a loopback address (the console's rule); SameSite=Strict,
        # since the session starts from this site's own form, so no cross-site request ever needs the cookie.
        cookie = session_cookie(request, COOKIE, started.cookie, max_age=int(service.SESSION_TTL.total_seconds()))
        response.set_cookie(replace(cookie, path=PORTAL_PREFIX, samesite="strict"))
        return response


# -- the pages -----------------------------------------------------------------------------------------------------
class PortalPagesController(Controller):
    path = PORTAL_PREFIX
    include_in_schema = False
    guards = [portal_guard]
    before_request = staticmethod(_forms_with_csrf)
    exception_handlers = PAGE_EXCEPTION_HANDLERS

    @get("/", opt=portal_page(ANY_VISITOR))
    async def home(self, request: Request[Any, Any, Any]) -> Response[Any]:
        visitor = _visitor(request)
        if visitor.account_id is not None and visitor.can(PortalPermission.VIEW_BILLING):
            return Redirect(PORTAL_PREFIX + "/overview", status_code=303)
        if visitor.customer_id is not None:
            return Redirect(PORTAL_PREFIX + "/licenses", status_code=303)
        return _page(request, "home.html", page="home")

    @post("/sign-out", status_code=303, opt=portal_page(ANY_VISITOR))
    async def sign_out(self, request: Request[Any, Any, Any], db: Db, runtime: RuntimeDep) -> Response[Any]:
        await service.end_session(db, visitor=_visitor(request), clock=runtime.clock)
        response: Response[Any] = render(request, "portal/signed_out.html", visitor=None, status_code=200)
        response.delete_cookie(COOKIE, path=PORTAL_PREFIX)
        return response

    # billing ---------------------------------------------------------------------------------------------------
    @get("/overview", opt=portal_page(PortalPermission.VIEW_BILLING))
    async def overview(self, request: Request[Any, Any, Any], db: Db, runtime: RuntimeDep) -> Response[Any]:
        page = await service.overview_page(db, _visitor(request), runtime.clock())
        return _page(request, "overview.html", page="overview", data=page, now=runtime.clock())

    @get("/usage", opt=portal_page(PortalPermission.VIEW_BILLING))
    async def usage(
        self, request: Request[Any, Any, Any], db: Db, runtime: RuntimeDep, by: FromQuery[BreakdownBy] = BreakdownBy.DAY
    ) -> Response[Any]:
        page = await service.usage_page(db, _visitor(request), runtime.clock(), by)
        titles = {BreakdownBy.DAY: "by day", BreakdownBy.AGENT: "by agent", BreakdownBy.LINE_ITEM: "by line item"}
        chart = bar_chart(
            [Point(label, value) for label, value in page.chart],
            title=f"Credits used this period, {titles[by]}",
            chart_id="usage",
        )
        return _page(
            request,
            "usage.html",
            page="usage",
            data=page,
            states=LimitState,
            chart=chart,
            chart_titles=titles,
            amount=credits_text,
        )

    @get("/credits", opt=portal_page(PortalPermission.VIEW_BILLING))
    async def credits(
        self, request: Request[Any, Any, Any], db: Db, runtime: RuntimeDep, offset: Offset = 0
    ) -> Response[Any]:
        page = await service.credits_page(db, _visitor(request), limit=PAGE_SIZE, offset=offset, clock=runtime.clock)
        return _page(
            request, "credits.html", page="credits", data=page, amount=credits_text, offset=offset, size=PAGE_SIZE
        )

    @get("/invoices", opt=portal_page(PortalPermission.VIEW_BILLING))
    async def invoices(self, request: Request[Any, Any, Any], db: Db) -> Response[Any]:
        source = _services(request).invoices
        visitor = _visitor(request)
        rows = await source.list_invoices(db, account_id=service.account_id_of(visitor)) if source else None
        # Money with its currency's digits, as the invoice PDF prints it ("59.00", not "59").
        return _page(request, "invoices.html", page="invoices", invoices=rows, money=money_text)

    @get("/invoices/{invoice_id:uuid}/pdf", opt=portal_page(PortalPermission.VIEW_BILLING))
    async def invoice_pdf(
        self, request: Request[Any, Any, Any], db: Db, invoice_id: FromPath[uuid.UUID]
    ) -> Response[bytes]:
        source = _services(request).invoices
        if source is None:
            raise NotFound("invoices are not available on this server", code="invoice_not_found")
        pdf = await source.invoice_pdf(db, account_id=service.account_id_of(_visitor(request)), invoice_id=invoice_id)
        return Response(
            pdf,
            media_type="application/pdf",
            headers={
                "Content-Disposition": f'attachment; filename="invoice-{invoice_id}.pdf"',
                "Cache-Control": "no-store",
            },
        )

    @get("/plans", opt=portal_page(PortalPermission.VIEW_BILLING))
    async def plans(self, request: Request[Any, Any, Any], db: Db, runtime: RuntimeDep) -> Response[Any]:
        comparison = await service.plans_page(db, _visitor(request), runtime.clock())
        return _page(
            request,
            "plans.html",
            page="plans",
            data=comparison,
            quota_cell=quota_cell,
            price_text=price_text,
            can_change=_services(request).plan_changes is not None,
        )

    @post("/plans/change", status_code=303, opt=portal_page(PortalPermission.CHANGE_BILLING))
    async def change_plan(self, request: Request[Any, Any, Any], db: Db) -> Response[Any]:
        changer = _services(request).plan_changes
        if changer is None:
            raise Conflict("plan changes are not available on this server yet", code="plan_changes_unavailable")
        form = await request.form()
        plan, key = form.get("plan"), form.get("idempotency_key")
        if not isinstance(plan, str) or not plan or not isinstance(key, str) or not key:
            raise ValidationFailed("choose a plan", field="plan")
        visitor = _visitor(request)
        await changer.change_plan(
            db,
            actor=Actor(name=f"portal:{visitor.session_id}", role=Role.BILLING),
            account_id=service.account_id_of(visitor),
            plan_code=plan[:64],
            idempotency_key=key[:200],
        )
        return Redirect(PORTAL_PREFIX + "/overview", status_code=303)

    # licenses --------------------------------------------------------------------------------------------------
    @get("/licenses", opt=portal_page(PortalPermission.VIEW_LICENSES))
    async def licenses(
        self, request: Request[Any, Any, Any], db: Db, runtime: RuntimeDep, offset: Offset = 0
    ) -> Response[Any]:
        rows, total = await service.customer_licenses(
            db, _visitor(request), limit=PAGE_SIZE, offset=offset, clock=runtime.clock
        )
        return _page(
            request, "licenses.html", page="licenses", licenses=rows, total=total, offset=offset, size=PAGE_SIZE
        )

    @get("/licenses/{license_id:uuid}", opt=portal_page(PortalPermission.VIEW_LICENSES))
    async def license(
        self, request: Request[Any, Any, Any], db: Db, runtime: RuntimeDep, license_id: FromPath[uuid.UUID]
    ) -> Response[Any]:
        view, activations = await service.customer_license(db, _visitor(request), license_id, clock=runtime.clock)
        return _page(request, "license.html", page="licenses", view=view, activations=activations)

    @get("/licenses/{license_id:uuid}/document", opt=portal_page(PortalPermission.MANAGE_LICENSES))
    async def license_document(
        self, request: Request[Any, Any, Any], db: Db, runtime: RuntimeDep, license_id: FromPath[uuid.UUID]
    ) -> Response[str]:
        document = await service.license_document(db, runtime, _visitor(request), license_id)
        return Response(
            document,
            media_type="application/jwt",
            headers={
                "Content-Disposition": f'attachment; filename="license-{license_id}.jwt"',
                "Cache-Control": "no-store",
            },
        )

    @get("/offline", opt=portal_page(PortalPermission.MANAGE_LICENSES))
    async def offline_form(self, request: Request[Any, Any, Any]) -> Response[Any]:
        service.customer_id_of(_visitor(request))  # a billing account's session has no licenses to activate
        return _page(request, "offline.html", page="offline")

    @post("/offline", opt=portal_page(PortalPermission.MANAGE_LICENSES), status_code=200)
    async def offline_answer(self, request: Request[Any, Any, Any], db: Db, runtime: RuntimeDep) -> Response[Any]:
        service.customer_id_of(_visitor(request))
        upload = (await request.form()).get("request")
        if not isinstance(upload, UploadFile):
            raise ValidationFailed("choose the activation request file", field="request")
        content = await upload.read(MAX_REQUEST_FILE_BYTES + 1)
        if len(content) > MAX_REQUEST_FILE_BYTES:
            raise ValidationFailed("an activation request is a small text file; this one is too large", field="request")
        issued = await service.answer_offline_request(db, runtime, _visitor(request), content)
        return Response(
            issued.text,
            media_type=MediaType.TEXT,
            headers={
                "Content-Disposition": f'attachment; filename="license-{issued.license_id}.lic"',
                "Cache-Control": "no-store",
            },
        )


def portal_routers() -> list[Router]:
    """What the app factory mounts for the portal (through ``console.routing.console_routers``): the staff link
    route under the admin guard (it checks the permission each route declares), the platform's link route, the
    pages and their stylesheet."""
    admin = Router("/", route_handlers=[PortalLinkAdminController], guards=[authorize])
    pages = Router("/", route_handlers=[PortalLinkPlatformController, PortalStartController, PortalPagesController])
    static = create_static_files_router(
        path=PORTAL_PREFIX + "/static", directories=[Path(__file__).parent / "static"], include_in_schema=False
    )
    return [admin, pages, static]
