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


def observed_product_app() -> Litestar:
    """The product as ``serve`` runs it, logging set up as ``serve`` does it (JSON lines at INFO, to stderr)."""
    from license_server.logs import configure_logging

    settings = Settings()
    configure_logging(settings.log_level, "json")
    return create_app(Runtime.build(settings), run_jobs=True)


def unobserved_product_app() -> Litestar:
    """The baseline of the observability benchmark: the same app without what observability adds per request (the
    request id and the request metrics, ``http_wiring.observe_requests``) and without the logging setup. The billing
    writes' fast path stays in front of Litestar, as served: it is not observability, and every poll passes it."""
    from license_server.billing.fast_writes import fast_platform_writes

    app = create_app(Runtime.build(Settings()), run_jobs=True)
    app.asgi_handler = fast_platform_writes(app, app._create_asgi_handler())  # without observe_requests' wrapper
    return app
