"""What the app factory mounts for the console: the staff pages, the static assets, and the console's error pages.

A page that fails shows the problem the API would give for the same error (the one mapping in ``http_wiring``),
in words: its title, its detail, its stable ``code`` and the fields at fault, with the same HTTP status.
The portal (``console.portal``) adds its router to ``console_routers``.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router
from litestar.static_files import create_static_files_router
from litestar.types import ExceptionHandlersMap
from pydantic import BaseModel

from license_server.console import CONSOLE_PREFIX, STATIC_PATH
from license_server.console.controllers import SignInController, StaffController
from license_server.console.portal.controllers import portal_routers
from license_server.console.templating import STATIC_DIR, render
from license_server.errors import StaffSessionRequired
from license_server.http_wiring import EXCEPTION_HANDLERS


def _api_problem(request: Request[Any, Any, Any], exc: Exception) -> tuple[int, dict[str, Any], dict[str, str]]:
    """The status, problem body and headers the API's one mapping gives for ``exc``."""
    handler = next(EXCEPTION_HANDLERS[kind] for kind in type(exc).__mro__ if kind in EXCEPTION_HANDLERS)
    response: Response[Any] = handler(request, exc)
    content = response.content
    body = content.model_dump(mode="json") if isinstance(content, BaseModel) else dict(content)
    return response.status_code or 500, body, dict(response.headers)


def problem_page(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if isinstance(exc, StaffSessionRequired):
        if request.headers.get("hx-request"):  # an HTMX fragment cannot show the sign-in page; send the browser
            return Response(None, status_code=401, headers={"HX-Redirect": f"{CONSOLE_PREFIX}/sign-in"})
        if request.method == "GET":
            return Response(None, status_code=303, headers={"Location": f"{CONSOLE_PREFIX}/sign-in"})
    status, problem, headers = _api_problem(request, exc)
    response = render(request, "error.html", status_code=status, problem=problem)
    for name in ("retry-after", "Retry-After"):
        if name in headers:
            response.headers["Retry-After"] = headers[name]
    return response


# Litestar picks the handler of the closest exception type across layers, so every type the API maps is mapped here.
CONSOLE_EXCEPTION_HANDLERS: ExceptionHandlersMap = dict.fromkeys(EXCEPTION_HANDLERS, problem_page)


async def _no_json_body_rule(_: Request[Any, Any, Any]) -> None:
    """Console forms are form-encoded: this replaces the API's JSON-only body hook for the console's routes."""


def console_routers() -> list[Router]:
    staff = Router(
        "/",
        route_handlers=[SignInController, StaffController],
        exception_handlers=CONSOLE_EXCEPTION_HANDLERS,
        before_request=_no_json_body_rule,
        include_in_schema=False,
    )
    static = create_static_files_router(
        path=STATIC_PATH,
        directories=[STATIC_DIR],
        include_in_schema=False,
    )
    return [staff, static, *portal_routers()]
