"""The console's session cookie and the guard every staff page goes through.

The cookie is HttpOnly and SameSite=Lax, and Secure except on plain http to a loopback address (``make run``,
the browser tests): a browser drops Secure cookies over http, and 127.0.0.1 never leaves the machine. Behind a
TLS-terminating proxy the request host is the public name, so the cookie is Secure there.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.handlers.base import BaseRouteHandler

from license_server.auth.guards import PERMISSION_OPT
from license_server.auth.tokens import Permission
from license_server.console.csrf import csrf_token, require_csrf
from license_server.console.service import SESSION_LIFETIME, resolve_session
from license_server.errors import PermissionDenied, StaffSessionRequired

if TYPE_CHECKING:
    from license_server.runtime import Runtime

SESSION_COOKIE = "ls_console_session"
# Before sign-in there is no session to bind the CSRF token to: this random cookie stands in for the sign-in form.
PRE_SESSION_COOKIE = "ls_console_pre"
# Routes that any signed-in staff user may use whatever their role (the dashboard frame, signing out).
SIGNED_IN_OPT = "signed_in"


def _is_loopback_http(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    if connection.url.scheme == "https":
        return False
    host = connection.url.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def session_cookie(connection: ASGIConnection[Any, Any, Any, Any], name: str, value: str, *, max_age: int) -> Cookie:
    return Cookie(
        key=name,
        value=value,
        path="/",
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=not _is_loopback_http(connection),
    )


def signed_in_cookie(connection: ASGIConnection[Any, Any, Any, Any], secret: str) -> Cookie:
    return session_cookie(connection, SESSION_COOKIE, secret, max_age=int(SESSION_LIFETIME.total_seconds()))


def cleared_cookie(connection: ASGIConnection[Any, Any, Any, Any]) -> Cookie:
    return session_cookie(connection, SESSION_COOKIE, "", max_age=0)


async def staff_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Resolve the session cookie, refuse what the role may not do, then check the CSRF token of unsafe requests.

    Every staff route declares the admin API's permission it needs (``needs(...)``) or that any signed-in staff user
    may use it (``SIGNED_IN_OPT``); a route that declares neither is refused (fail closed, like the API's guard).
    """
    runtime: Runtime = connection.app.state.runtime
    secret = connection.cookies.get(SESSION_COOKIE)
    live = None
    if secret:
        async with runtime.session_factory() as db:
            live = await resolve_session(db, hasher=runtime.hasher, cookie_secret=secret, clock=runtime.clock)
    if live is None:
        raise StaffSessionRequired("sign in to the console")
    connection.state.actor = live.actor
    connection.state.staff_session_id = live.session.id
    connection.state.staff_user_id = live.user.id
    connection.state.csrf_token = csrf_token(runtime.hasher, str(live.session.id))
    permission = handler.opt.get(PERMISSION_OPT)
    if not handler.opt.get(SIGNED_IN_OPT) and (
        not isinstance(permission, Permission) or not live.actor.can(permission)
    ):
        raise PermissionDenied(f"role {live.actor.role.value} may not {permission or 'use this page'}")
    if isinstance(connection, Request):
        await require_csrf(connection, runtime.hasher, str(live.session.id))


def permissions_of(request: Request[Any, Any, Any]) -> frozenset[Permission]:
    """What the signed-in actor may do: templates show a button only when its POST would be allowed."""
    actor = getattr(request.state, "actor", None)
    return frozenset(p for p in Permission if actor is not None and actor.can(p))


def redirect(path: str, *, cookies: list[Cookie] | None = None) -> Response[None]:
    """303 See Other: after a POST the browser GETs the next page (no resubmission on reload)."""
    return Response(None, status_code=303, headers={"Location": path}, cookies=cookies or [])
