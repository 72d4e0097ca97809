"""The app factory: wiring in one place, and the one mapping from errors to RFC 9457 problem details."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar, MediaType, Request, Response, Router
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ExceptionHandlersMap
from sqlalchemy.ext.asyncio import AsyncSession

import license_server
from license_server.auth.controllers import AuditController, TokenController
from license_server.auth.guards import authorize, provide_actor
from license_server.billing.controllers import BILLING_STATE_KEY, BillingAdminController, PlatformBillingController
from license_server.billing.credits.controllers import CreditsAdminController, PlatformCreditsController
from license_server.config import Settings
from license_server.db.session import session_scope
from license_server.deployments.controllers import AdminActivationController, DeploymentController
from license_server.deployments.jobs import flush_check_ins
from license_server.errors import LicenseServerError
from license_server.events.controllers import EventController, WebhookController, WebhookDeliveryController
from license_server.health.controllers import HealthController
from license_server.inner_api.controllers import STORE_STATE_KEY, InnerApiAdminController, InnerApiController
from license_server.inner_api.store import SqlInnerApiStore
from license_server.json_bodies import reject_ambiguous_json
from license_server.licenses.controllers import CustomerController, LicenseController, PlanController
from license_server.offline.controllers import OfflineController
from license_server.openapi import StrictPydanticSchemaPlugin
from license_server.runtime import Runtime
from license_server.scheduler import build_scheduler
from license_server.schemas_common import PROBLEM_MEDIA_TYPE, FieldProblem, Problem, problem_spec
from license_server.signing.controllers import KeyController, WellKnownController
from license_server.validation import FieldStrictPydanticInitPlugin

logger = logging.getLogger("license_server")
ADMIN_PREFIX = "/v1/admin"
MAX_REQUEST_BODY_BYTES = 1024 * 1024
ADMIN_CONTROLLERS = [
    AdminActivationController,
    CustomerController,
    PlanController,
    LicenseController,
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


def problem_response(
    status: int, code: str, detail: str, title: str | None = None, errors: list[FieldProblem] | None = None
) -> Response[Problem]:
    body = Problem(title=title or detail, status=status, detail=detail, code=code, errors=errors or [], message=detail)
    return Response(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE)


def _handle_domain_error(_: Request[Any, Any, Any], exc: LicenseServerError) -> Response[Any]:
    errors = [FieldProblem(field=e.field, message=e.message) for e in exc.field_errors]
    response: Response[Any] = problem_response(exc.status_code, exc.code, exc.detail, exc.title, errors)
    if exc.extensions:  # RFC 9457 extension members beside the standard ones
        response = Response(
            {**response.content.model_dump(mode="json"), **exc.extensions},
            status_code=exc.status_code,
            media_type=PROBLEM_MEDIA_TYPE,
        )
    response.headers.update(exc.headers)
    return response


def _field_of(item: dict[str, Any]) -> str:
    key = str(item.get("key") or "")
    return key or str(item.get("source") or "body")


def _handle_validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Problem]:
    extra = exc.extra if isinstance(exc.extra, list) else []
    errors = [
        FieldProblem(field=_field_of(item), message=str(item.get("message", "invalid")))
        for item in extra
        if isinstance(item, dict)
    ]
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors) or str(exc.detail)
    return problem_response(400, "validation_error", detail, "The request is invalid", errors)


_HTTP_CODES = {
    401: "authentication_required",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    429: "rate_limited",
}


def _handle_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Problem]:
    status = exc.status_code
    if status >= 500:
        return _handle_unexpected(request, exc)
    if status == 400:  # a body Litestar could not even decode (malformed JSON, wrong content type)
        return problem_response(
            400,
            "validation_error",
            str(exc.detail),
            "The request body is invalid",
            [FieldProblem(field="body", message=str(exc.detail))],
        )
    code = _HTTP_CODES.get(status, "bad_request" if status < 500 else "internal_error")
    response = problem_response(status, code, str(exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def _handle_undecodable(_: Request[Any, Any, Any], exc: UnicodeDecodeError) -> Response[Problem]:
    # msgspec hands invalid UTF-8 inside JSON strings through as this, from the body parser.
    return problem_response(
        400,
        "validation_error",
        "the request body is not valid UTF-8",
        "The request body is invalid",
        [FieldProblem(field="body", message="not valid UTF-8")],
    )


def _handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    # The traceback goes to the log without request bodies or headers, which may carry secrets.
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(HTTP_500_INTERNAL_SERVER_ERROR, "internal_error", "An unexpected error occurred")


# The one error-to-response mapping; the edge app uses it too.
EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    LicenseServerError: _handle_domain_error,
    ValidationException: _handle_validation,
    HTTPException: _handle_http,
    UnicodeDecodeError: _handle_undecodable,
    Exception: _handle_unexpected,
}


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
        if scheduler is not None:
            scheduler.start()

    async def close_runtime() -> None:
        if scheduler is not None:
            scheduler.shutdown(wait=False)
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
        before_request=reject_ambiguous_json,
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
    return app


__all__ = ["EXCEPTION_HANDLERS", "MediaType", "create_app", "problem_response"]
