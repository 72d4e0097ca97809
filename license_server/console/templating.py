"""The one Jinja2 environment of the console and the portal, and the function that renders a page.

Autoescaping is on for every template: values from the database (customer names, notes) are text, never markup.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PrefixLoader, StrictUndefined, select_autoescape
from litestar import MediaType, Request, Response

from license_server.auth.tokens import Actor, Permission
from license_server.console import STATIC_PATH
from license_server.console.csrf import CSRF_FIELD, CSRF_HEADER

PACKAGE_DIR = Path(__file__).parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
PORTAL_TEMPLATES_DIR = PACKAGE_DIR / "portal" / "templates"
STATIC_DIR = PACKAGE_DIR / "static"


def _moment(value: datetime | None) -> str:
    """Times are shown in UTC to the minute, the zone named: staff in several time zones read the same thing."""
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "—"


def _day(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d") if value is not None else "—"


def _amount(value: Decimal | int | None) -> str:
    """Credits and money as exact decimals, without trailing zeros (never through float)."""
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    text = format(value.normalize(), "f") if value == value.to_integral() else format(value, "f").rstrip("0")
    return text.rstrip(".") if "." in text else text


def _build_environment() -> Environment:
    environment = Environment(
        loader=ChoiceLoader(
            [
                FileSystemLoader(TEMPLATES_DIR),
                PrefixLoader({"portal": FileSystemLoader(PORTAL_TEMPLATES_DIR)}),
            ]
        ),
        autoescape=select_autoescape(["html"], default=True),
        undefined=StrictUndefined,  # a misspelt variable fails the render (and its test), not shows blank
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(moment=_moment, day=_day, amount=_amount)
    environment.globals.update(static=STATIC_PATH, csrf_field=CSRF_FIELD, csrf_header=CSRF_HEADER)
    return environment


ENVIRONMENT = _build_environment()


def render_text(template: str, **context: Any) -> str:
    return ENVIRONMENT.get_template(template).render(**context)


def render(request: Request[Any, Any, Any], template: str, *, status_code: int = 200, **context: Any) -> Response[str]:
    """Render a page. Every template gets the request's CSRF token, the signed-in actor (when any) and ``can``: the
    permissions of the actor's role, so a page shows a button only when its POST would be allowed."""
    actor: Actor | None = getattr(request.state, "actor", None)
    context.setdefault("csrf_token", getattr(request.state, "csrf_token", ""))
    context.setdefault("actor", actor)
    context.setdefault("can", frozenset(p for p in Permission if actor is not None and actor.can(p)))
    context.setdefault("request_path", request.url.path)
    context.setdefault("done", "")
    return Response(
        render_text(template, **context),
        status_code=status_code,
        media_type=MediaType.HTML,
        headers={"Cache-Control": "no-store"},  # pages show account data; no shared or back-button cache
    )
