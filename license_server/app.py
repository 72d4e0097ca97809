"""The app factory: wiring in one place. The error-to-response mapping it installs is in ``http_wiring``."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator

from litestar import Litestar, MediaType, Router
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import Components
from sqlalchemy.ext.asyncio import AsyncSession

import license_server
from license_server.auth.controllers import AuditController, TokenController
from license_server.auth.guards import authorize, provide_actor
from license_server.auth.throttle import CredentialKind, CredentialThrottle
from license_server.billing.clocks.controllers import TestClocksAdminController
from license_server.billing.controllers import BILLING_STATE_KEY, BillingAdminController, PlatformBillingController
from license_server.billing.credits.controllers import CreditsAdminController, PlatformCreditsController
from license_server.billing.fast_writes import fast_platform_writes
from license_server.billing.invoices.controllers import InvoicesAdminController, PlatformInvoicesController
from license_server.billing.payments.controllers import PaymentsAdminController, StripeWebhookController
from license_server.billing.payments.stripe_provider import StripeProvider
from license_server.billing.subscriptions.controllers import SubscriptionsAdminController
from license_server.billing.usage.controllers import PlatformUsageBreakdownController, UsageBreakdownAdminController
from license_server.client_addresses import trusted_proxies_middleware
from license_server.config import Settings
from license_server.console.portal.interfaces import PORTAL_STATE_KEY, PortalServices
from license_server.console.portal.service import AccountInvoices, AccountPlanChanges, InvoicesPageLinks
from license_server.console.routing import console_routers
from license_server.db.session import session_scope
from license_server.deployments.controllers import (
    AdminActivationController,
    DeploymentController,
    LicenseDocumentController,
)
from license_server.deployments.jobs import flush_check_ins
from license_server.events.controllers import EventController, WebhookController, WebhookDeliveryController
from license_server.health.controllers import HealthController
from license_server.http_wiring import EXCEPTION_HANDLERS, MAX_REQUEST_BODY_BYTES, metrics_route, observe_requests
from license_server.inner_api.controllers import STORE_STATE_KEY, InnerApiAdminController, InnerApiController
from license_server.inner_api.store import SqlInnerApiStore
from license_server.inner_billing.controllers import STATE_KEY as INNER_BILLING_STATE_KEY
from license_server.inner_billing.controllers import InnerBillingController
from license_server.inner_billing.service import InnerBilling
from license_server.json_bodies import document_body_rules, enforce_json_bodies
from license_server.licenses.controllers import CustomerController, LicenseController, PlanController
from license_server.metrics import serve_metrics_port
from license_server.offline.controllers import OfflineController
from license_server.openapi import (
    SECURITY_SCHEMES,
    DocumentedOperation,
    StrictPydanticSchemaPlugin,
    api_docs_assets_router,
    document_problem_examples,
    offline_render_plugins,
)
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
    InvoicesAdminController,
    PaymentsAdminController,
    UsageBreakdownAdminController,
    SubscriptionsAdminController,
    TestClocksAdminController,
]
PUBLIC_CONTROLLERS = [
    HealthController,
    WellKnownController,
    DeploymentController,
    InnerApiController,
    InnerBillingController,
    PlatformBillingController,
    PlatformCreditsController,
    PlatformInvoicesController,
    PlatformUsageBreakdownController,
    StripeWebhookController,
]


# Routes that take a deployment token (bearer); deactivation takes the deployment's own token or an admin token.
DEPLOYMENT_TOKEN_ROUTES = {("GET", "/v1/license"), ("POST", "/v1/usage"), ("DELETE", "/v1/activations/{activation_id}")}
# Unauthenticated routes limited per client address (and license key): 429 with Retry-After.
RATE_LIMITED_ROUTES = {("POST", "/v1/activations"), ("POST", "/v1/licenses/validate")}
INNER_API_PREFIX = "/inner/api"
PLATFORM_PREFIX = "/v1/billing"


def _security(method: str, path: str) -> list[dict[str, list[str]]] | None:
    no_scopes: list[str] = []
    """The credentials a route takes, as OpenAPI security requirements (None: it takes none)."""
    if path.startswith(ADMIN_PREFIX):
        return [{"adminToken": no_scopes}]
    if (method, path) in DEPLOYMENT_TOKEN_ROUTES:
        return [{"deploymentToken": no_scopes}] + ([{"adminToken": no_scopes}] if method == "DELETE" else [])
    if path.startswith(INNER_API_PREFIX):
        return [{"innerApiSecret": no_scopes}]
    if path.startswith(PLATFORM_PREFIX):
        return [{"platformSecret": no_scopes}]
    return None


def _document_error_responses(app: Litestar) -> None:
    """Declare the credentials and the problem responses each route can give, so the OpenAPI schema is complete."""
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            responses: dict[int, ResponseSpec] = {400: problem_spec("Invalid input; `errors` names the fields")}
            methods = sorted(handler.http_methods)
            handler.operation_class = DocumentedOperation
            security = _security(methods[0], route.path)
            if security is not None:
                handler.security = security
                responses[401] = problem_spec("Missing, unknown or revoked credentials")
                responses[429] = problem_spec("Too many failed authentications from this address; see Retry-After")
            if any((method, route.path) in RATE_LIMITED_ROUTES for method in methods):
                responses[429] = problem_spec("Too many requests from this address or for this key; see Retry-After")
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


def freeze_startup_heap() -> None:
    """Keep the garbage collector's full passes off what startup built.

    A served process keeps its startup heap (modules, the app with its routes and schemas, the engines) as long as
    it lives, and the collector's full passes walked all of it: under write load they ran every second or two and
    took 80-300 ms each, a pause for every request in flight and about a tenth of the process's time. Frozen (after
    one last collection, so that no garbage is kept), those objects are never walked again; what requests allocate
    is collected as before.
    """
    gc.collect()
    gc.freeze()


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
    config = runtime.settings
    scheduler = build_scheduler(runtime, shared=run_shared_jobs, per_process=True) if run_jobs else None

    def provide_runtime() -> Runtime:
        return runtime

    async def start_jobs() -> None:
        if config.metrics_port is not None:
            serve_metrics_port(config.metrics_host, config.metrics_port)
        runtime.start()  # the invalidation listener (PostgreSQL): other replicas' writes reach this one's caches
        if scheduler is not None:
            scheduler.start()
        if run_jobs:  # a served process
            freeze_startup_heap()

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
            *console_routers(),  # /console pages: staff sessions and CSRF of their own, never the bearer guard
            metrics_route(config, CredentialThrottle(runtime, CredentialKind.METRICS_TOKEN)),
            api_docs_assets_router(),
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
            "`Authorization: Bearer <admin token>`; errors are RFC 9457 problem details with a `code` and the "
            "request's `request_id` (also in the `X-Request-Id` response header).",
            # Served from the package's own assets: the docs work offline (license_server/api_docs).
            render_plugins=offline_render_plugins(),
            components=Components(security_schemes=SECURITY_SCHEMES),
        ),
        state=State(
            {
                "runtime": runtime,
                STORE_STATE_KEY: SqlInnerApiStore(runtime),
                BILLING_STATE_KEY: runtime.billing,
                INNER_BILLING_STATE_KEY: InnerBilling(
                    runtime.billing,
                    runtime.settings.dify_billing,
                    payments=StripeProvider(config) if config.stripe_secret_key is not None else None,
                    invoices_page=InvoicesPageLinks(runtime),
                ),
                # The Invoices page over billing/invoices; the Plans page's buttons over the subscriptions lifecycle.
                PORTAL_STATE_KEY: PortalServices(
                    invoices=AccountInvoices(runtime), plan_changes=AccountPlanChanges(runtime)
                ),
            }
        ),
        # The process configures logging (serve: LICENSE_SERVER_LOG_LEVEL); Litestar must not reset the root logger.
        logging_config=None,
        debug=False,
    )
    _document_error_responses(app)
    document_body_rules(app)
    document_problem_examples(app)
    # Reserve and commit, well formed, skip Litestar's per-request machinery (billing/fast_writes.py); not behind
    # trusted proxies, whose middleware decides the address authentication failures count against.
    app.asgi_handler = fast_platform_writes(app, app.asgi_handler, enabled=not runtime.settings.trusted_proxies)
    observe_requests(app, app_name="vendor", settings=config)
    return app


__all__ = ["MediaType", "create_app"]
