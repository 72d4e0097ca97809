"""Authorization: every portal route, for every portal role, on both kinds of session (a billing account's, a
customer's). Seed 002: only Owner, Admin and billing:read see billing; Members see no billing page."""

from __future__ import annotations

import uuid

import httpx
import pytest
from litestar import Litestar

from license_server.console.portal.controllers import ANY_VISITOR, PERMISSION_OPT, PORTAL_PREFIX
from license_server.console.portal.service import PortalPermission
from tests.console.portal.conftest import LinkFactory, SelfHosted, csrf_of, signed_in

ROLES = ("owner", "admin", "billing:read", "member")
# Who may do what, written out from seed 002 rather than read back from the code under test.
ALLOWED = {
    PortalPermission.VIEW_BILLING: {"owner", "admin", "billing:read"},
    PortalPermission.CHANGE_BILLING: {"owner", "admin"},
    PortalPermission.VIEW_LICENSES: {"owner", "admin", "billing:read", "member"},
    PortalPermission.MANAGE_LICENSES: {"owner", "admin"},
}
BILLING_PERMISSIONS = {PortalPermission.VIEW_BILLING, PortalPermission.CHANGE_BILLING}


def _page_routes(app: Litestar) -> list[tuple[str, str, object]]:
    """(method, path, declared permission) of every portal page route, except starting and ending a session."""
    routes = []
    for route in app.routes:
        if not route.path.startswith(PORTAL_PREFIX) or route.path.startswith(
            (f"{PORTAL_PREFIX}/start", f"{PORTAL_PREFIX}/static")
        ):
            continue
        for handler in getattr(route, "route_handlers", []):
            for method in handler.http_methods:
                if method in {"HEAD", "OPTIONS"}:
                    continue
                routes.append((method, route.path, handler.opt.get(PERMISSION_OPT)))
    return sorted(routes)


def test_every_portal_page_declares_a_permission(app: Litestar) -> None:
    routes = _page_routes(app)
    assert len(routes) >= 14
    for method, path, permission in routes:
        assert permission == ANY_VISITOR or isinstance(permission, PortalPermission), (method, path)
    declared = {(m, p): perm for m, p, perm in routes}
    assert declared[("POST", "/portal/sign-out")] == ANY_VISITOR
    assert declared[("GET", "/portal/overview")] == PortalPermission.VIEW_BILLING


def _concrete(path: str, license_id: uuid.UUID) -> str:
    return path.replace("{license_id:uuid}", str(license_id)).replace("{invoice_id:uuid}", str(uuid.uuid4()))


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("subject", ["account", "customer"])
async def test_each_role_reaches_exactly_the_pages_its_permissions_allow(
    app: Litestar,
    web: httpx.AsyncClient,
    account_link: LinkFactory,
    customer_link: LinkFactory,
    self_hosted: SelfHosted,
    role: str,
    subject: str,
) -> None:
    link = await (account_link(role) if subject == "account" else customer_link(role))
    await signed_in(web, link)
    home = await web.get("/portal/", follow_redirects=True)
    token = csrf_of(home.text)
    for method, path, permission in _page_routes(app):
        if path == "/portal/sign-out":
            continue
        url = _concrete(path, self_hosted.license_id)
        response = await (web.get(url) if method == "GET" else web.post(url, data={"_csrf": token}))
        if permission == ANY_VISITOR or role in ALLOWED[permission]:  # type: ignore[index]
            assert response.status_code not in (401, 403), (role, subject, method, path, response.text[-400:])
            wrong_subject = (permission in BILLING_PERMISSIONS) != (subject == "account")
            if permission != ANY_VISITOR and wrong_subject:
                assert response.status_code == 404, (role, subject, method, path)
        else:
            assert response.status_code == 403, (role, subject, method, path, response.status_code)
            assert "permission_denied" in response.text
    signed_out = await web.post("/portal/sign-out", data={"_csrf": token})
    assert signed_out.status_code == 200


async def test_a_member_asking_for_a_billing_page_is_told_why_in_words(
    web: httpx.AsyncClient, account_link: LinkFactory
) -> None:
    await signed_in(web, await account_link("member"))
    home = await web.get("/portal/")
    assert home.status_code == 200
    assert "Overview" not in home.text
    assert "/portal/usage" not in home.text
    usage = await web.get("/portal/usage")
    assert usage.status_code == 403
    assert "permission_denied" in usage.text
    assert "your role (member) may not see the billing pages" in usage.text
