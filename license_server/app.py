"""The app factory: wiring in one place. The error-to-response mapping it installs is in ``http_wiring``."""

from __future__ import annotations

from collections.abc import AsyncIterator

from litestar import Litestar, MediaType, Router
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin
from sqlalchemy.ext.asyncio import AsyncSession

import license_server
from license_server.auth.controllers import AuditController, TokenController
from license_server.auth.guards import authorize, provide_actor
from license_server.billing.controllers import BILLING_STATE_KEY, BillingAdminController, PlatformBillingController
from license_server.billing.credits.controllers import CreditsAdminController, PlatformCreditsController
from license_server.client_addresses import trusted_proxies_middleware
from license_server.config import Settings
from license_server.db.session import session_scope
from license_server.deployments.controllers import (
    AdminActivationController,
    DeploymentController,
    LicenseDocumentController,
)
from license_server.deployments.jobs import flush_check_ins
from license_server.events.controllers import EventController, WebhookController, WebhookDeliveryController
from license_server.health.controllers import HealthController
from license_server.http_wiring import EXCEPTION_HANDLERS, MAX_REQUEST_BODY_BYTES
from license_server.inner_api.controllers import STORE_STATE_KEY, InnerApiAdminController, InnerApiController
from license_server.inner_api.store import SqlInnerApiStore
from license_server.json_bodies import document_body_rules, enforce_json_bodies
from license_server.licenses.controllers import CustomerController, LicenseController, PlanController
from license_server.offline.controllers import OfflineController
from license_server.openapi import StrictPydanticSchemaPlugin
from license_server.runtime import Runtime
from license_server.scheduler import build_scheduler
from license_server.schemas_common import problem_spec
from license_server.signing.controllers import KeyController, WellKnownController
from license_server.validation import FieldStrictPydanticInitPlugin

ADMIN_PREFIX = "/v1/admin"
ADMIN_CONTROLLERS = [
    AdminActivationController,
    CustomerController,
    PlanController,
    LicenseController,
    LicenseDocumentController,
    TokenController,
    AuditController,
    KeyController,
    WebhookController,
    WebhookDeliveryController,
    EventController,
    InnerApiAdminController,
    OfflineController,
    BillingAdminController,
    CreditsAdminController,
]
PUBLIC_CONTROLLERS = [
    HealthController,
    WellKnownController,
    DeploymentController,
    InnerApiController,
    PlatformBillingController,
    PlatformCreditsController,
]


def _document_error_responses(app: Litestar) -> None:
    """Declare the problem responses each route can give, so the OpenAPI schema is complete."""
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            responses: dict[int, ResponseSpec] = {400: problem_spec("Invalid input; `errors` names the fields")}
            if route.path.startswith(ADMIN_PREFIX):
                responses[401] = problem_spec("Missing, unknown or revoked admin token")
                responses[429] = problem_spec("Too many failed authentications from this address; see Retry-After")
                responses[403] = problem_spec("The token's role lacks the permission this route needs")
                # a resource named in the path, or referenced from the body (a customer, a plan), may not exist
                responses[404] = problem_spec("No such resource")
                if "GET" not in handler.http_methods:
                    responses[409] = problem_spec("Conflicts with the resource's current state")
            responses.update(handler.responses or {})
            handler.responses = responses


async def _provide_db(runtime: NamedDependency[Runtime]) -> AsyncIterator[AsyncSession]:
    async for session in session_scope(runtime.session_factory):
        yield session


def create_app(
    runtime: Runtime | None = None,
    *,
    settings: Settings | None = None,
    run_jobs: bool = False,
    run_shared_jobs: bool = True,
) -> Litestar:
    """Build the app. Without a runtime one is built from settings, which loads the keys or refuses to start.

    With ``run_jobs`` the process runs its scheduled jobs: always the per-process check-in flush, and the shared
    jobs (sweep, webhooks) unless ``run_shared_jobs`` is False (``serve --no-scheduler``).
    """
    runtime = runtime or Runtime.build(settings or Settings())
    scheduler = build_scheduler(runtime, shared=run_shared_jobs, per_process=True) if run_jobs else None

    def provide_runtime() -> Runtime:
        return runtime

    async def start_jobs() -> None:
        runtime.start()  # the invalidation listener (PostgreSQL): other replicas' writes reach this one's caches
        if scheduler is not None:
            scheduler.start()

    async def close_runtime() -> None:
        try:
            if scheduler is not None:
                await scheduler.stop()  # hands the sweep lease back: a restarted replica need not wait it out
        finally:
            try:
                await flush_check_ins(runtime)  # the last polls' check-ins are not lost on a clean shutdown
            finally:
                await runtime.close()

    app = Litestar(
        route_handlers=[
            *PUBLIC_CONTROLLERS,
            Router("/", route_handlers=ADMIN_CONTROLLERS, guards=[authorize]),
        ],
        dependencies={
            "runtime": Provide(provide_runtime, sync_to_thread=False),
            "db": Provide(_provide_db),
            "actor": Provide(provide_actor, sync_to_thread=False),
        },
        exception_handlers=dict(EXCEPTION_HANDLERS),
        # Handlers name the runtime through dependencies.RuntimeDep, a forward reference: resolved here.
        signature_types=[Runtime],
        before_request=enforce_json_bodies,
        # Behind trusted proxies the rate limits count the client they name, not the proxy.
        middleware=[trusted_proxies_middleware(runtime.settings.trusted_proxies)]
        if runtime.settings.trusted_proxies
        else [],
        on_startup=[start_jobs],
        on_shutdown=[close_runtime],
        request_max_body_size=MAX_REQUEST_BODY_BYTES,
        plugins=[StrictPydanticSchemaPlugin(), FieldStrictPydanticInitPlugin()],
        openapi_config=OpenAPIConfig(
            title="License Server",
            version=license_server.__version__,
            path="/schema",
            description="Issue, sign and enforce enterprise licenses. Admin routes take "
            "`Authorization: Bearer <admin token>`; errors are RFC 9457 problem details with a `code`.",
            render_plugins=[ScalarRenderPlugin(), SwaggerRenderPlugin(path="/swagger")],
        ),
        state=State(
            {"runtime": runtime, STORE_STATE_KEY: SqlInnerApiStore(runtime), BILLING_STATE_KEY: runtime.billing}
        ),
        # The process configures logging (serve: LICENSE_SERVER_LOG_LEVEL); Litestar must not reset the root logger.
        logging_config=None,
        debug=False,
    )
    _document_error_responses(app)
    document_body_rules(app)
    return app


__all__ = ["MediaType", "create_app"]
