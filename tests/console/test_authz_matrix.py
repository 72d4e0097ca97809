"""Every console route declares the admin API's permission it needs (or that any signed-in staff user may use it);
each role gets exactly what its API permissions allow, and nothing without a session or a CSRF token."""

from __future__ import annotations

import re

import httpx
import pytest
from litestar import Litestar

from license_server.auth.guards import PERMISSION_OPT
from license_server.auth.tokens import ROLE_PERMISSIONS, Permission, Role
from license_server.console.sessions import SIGNED_IN_OPT
from license_server.licenses import service as licenses
from license_server.runtime import Runtime
from tests.console.conftest import Seeded, StaffFactory, http_sign_in

PUBLIC = {("GET", "/console/sign-in"), ("POST", "/console/sign-in")}


@pytest.fixture
def backend() -> str:
    """Authorisation does not depend on storage; SQLite is enough here."""
    return "sqlite"


def console_routes(app: Litestar) -> list[tuple[str, str, Permission | None, bool]]:
    routes = []
    for route in app.routes:
        if not route.path.startswith("/console") or route.path.startswith("/console/static"):
            continue
        for handler in getattr(route, "route_handlers", []):
            for method in sorted(handler.http_methods - {"OPTIONS", "HEAD"}):
                if (method, route.path) in PUBLIC:
                    continue
                routes.append(
                    (method, route.path, handler.opt.get(PERMISSION_OPT), bool(handler.opt.get(SIGNED_IN_OPT)))
                )
    return routes


def concrete(path: str, seeded: Seeded) -> str:
    values = {
        "license_id": str(seeded.license_id),
        "customer_id": str(seeded.customer_id),
        "platform_id": str(seeded.platform_id),
        "external_id": seeded.external_id,
        "code": seeded.plan_code,
        "delivery_id": "00000000-0000-4000-8000-000000000000",
        "number": "INV-999999",  # no such invoice: a 404 for whoever may ask, a 403 for whoever may not
    }
    return re.sub(r"\{(\w+):\w+\}", lambda m: values[m.group(1)], path)


def test_every_console_route_declares_a_permission_or_signed_in(app: Litestar) -> None:
    routes = console_routes(app)
    assert len(routes) >= 25
    undeclared = [
        (m, p) for m, p, permission, signed_in in routes if not signed_in and not isinstance(permission, Permission)
    ]
    assert undeclared == []


async def test_without_a_session_pages_redirect_to_sign_in_and_posts_are_refused(
    app: Litestar, console_client: httpx.AsyncClient, seeded: Seeded
) -> None:
    console_client.cookies.set("ls_console_session", "lscs_forged")
    for method, path_format, _, _ in console_routes(app):
        path = concrete(path_format, seeded)
        response = await console_client.request(method, path)
        if method == "GET":
            assert response.status_code == 303, (method, path)
            assert response.headers["location"] == "/console/sign-in"
        else:
            assert response.status_code == 401, (method, path, response.text)
            assert "staff_session_required" in response.text


@pytest.mark.parametrize("role", list(Role))
async def test_each_role_may_use_exactly_the_routes_its_api_permissions_allow(
    role: Role, app: Litestar, console_client: httpx.AsyncClient, make_staff: StaffFactory, seeded: Seeded
) -> None:
    csrf = await http_sign_in(console_client, await make_staff(role))
    # Destructive POSTs last, so that revoking does not turn later checks into 409s (which are fine, but less telling).
    routes = sorted(console_routes(app), key=lambda r: (r[0] == "POST", "revoke" in r[1], r[1]))
    for method, path_format, permission, signed_in in routes:
        path = concrete(path_format, seeded)
        response = await console_client.request(method, path, data={"_csrf": csrf} if method == "POST" else None)
        allowed = signed_in or (permission is not None and permission in ROLE_PERMISSIONS[role])
        if allowed:
            assert response.status_code != 403, (role, method, path, response.text[:500])
            assert response.status_code < 500, (role, method, path, response.text[:500])
        else:
            assert response.status_code == 403, (role, method, path, response.status_code)
            assert "permission_denied" in response.text
        if path_format.endswith(("sign-out", "sign-out-everywhere")):
            csrf = await http_sign_in(console_client, await make_staff(role))


async def test_a_post_without_or_with_a_wrong_csrf_token_is_refused(
    console_client: httpx.AsyncClient, make_staff: StaffFactory, seeded: Seeded, runtime: Runtime
) -> None:
    await http_sign_in(console_client, await make_staff(Role.OWNER))
    path = f"/console/licenses/{seeded.license_id}/suspend"
    for data in ({}, {"_csrf": "0" * 64}):
        response = await console_client.post(path, data=data)
        assert response.status_code == 403
        assert "csrf_token_invalid" in response.text
    async with runtime.session_factory() as db:
        view = await licenses.get_license(db, seeded.license_id, clock=runtime.clock)
    assert not view.license.is_suspended  # nothing was written


async def test_a_session_token_of_another_session_is_refused(
    app: Litestar, make_staff: StaffFactory, seeded: Seeded
) -> None:
    """The CSRF token is bound to its session: one user's token does not work with another session's cookie."""
    login = await make_staff(Role.OWNER)
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as first,
        httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as second,
    ):
        token_of_first = await http_sign_in(first, login)
        await http_sign_in(second, login)
        response = await second.post(f"/console/licenses/{seeded.license_id}/suspend", data={"_csrf": token_of_first})
    assert response.status_code == 403
    assert "csrf_token_invalid" in response.text
