"""ASGI factories for ``uvicorn --factory``: the product as ``serve`` builds it, and a bare Litestar JSON route."""

from __future__ import annotations

from litestar import Litestar, get

from license_server.app import create_app
from license_server.config import Settings
from license_server.runtime import Runtime


def product_app() -> Litestar:
    """What ``license-server serve`` runs (scheduled jobs included), configured from LICENSE_SERVER_* variables."""
    return create_app(Runtime.build(Settings()), run_jobs=True)


@get("/bare")
async def bare() -> dict[str, str]:
    return {"status": "ok"}


def bare_app() -> Litestar:
    return Litestar(route_handlers=[bare])
