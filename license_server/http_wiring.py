"""The HTTP rules both app factories (the vendor's ``app`` and the ``edge``) share: the one mapping from errors to
RFC 9457 problem details, the request body size limit, and what every request gets: a request id (in the logs, the
``X-Request-Id`` response header and problem bodies), its count and latency in the metrics, and ``/metrics``.

Here, below both factories, so the edge does not import the vendor app to get them.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from litestar import Litestar, Request, Response, get
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.handlers import HTTPRouteHandler
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ASGIApp, ExceptionHandlersMap, Message, Receive, Scope, Send

from license_server import metrics
from license_server.config import Settings
from license_server.errors import AuthenticationRequired, LicenseServerError
from license_server.logs import REQUEST_ID, REQUEST_ID_HEADER, accepted_request_id, new_request_id
from license_server.schemas_common import PROBLEM_MEDIA_TYPE, FieldProblem, Problem

logger = logging.getLogger("license_server")
access_logger = logging.getLogger("license_server.access")
MAX_REQUEST_BODY_BYTES = 1024 * 1024
_REQUEST_ID_HEADER_BYTES = REQUEST_ID_HEADER.encode()


def problem_response(
    status: int, code: str, detail: str, title: str | None = None, errors: list[FieldProblem] | None = None
) -> Response[Problem]:
    body = Problem(
        title=title or detail,
        status=status,
        detail=detail,
        code=code,
        errors=errors or [],
        message=detail,
        request_id=REQUEST_ID.get(),
    )
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
    415: "unsupported_media_type",
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


# The one error-to-response mapping.
EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    LicenseServerError: _handle_domain_error,
    ValidationException: _handle_validation,
    HTTPException: _handle_http,
    UnicodeDecodeError: _handle_undecodable,
    Exception: _handle_unexpected,
}


async def send_problem(scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
    """Answer ``exc`` through the mapping above, as Litestar's error handling would, for an ASGI path that answers
    a route without Litestar's routing (``billing/fast_writes.py``)."""
    handler = next((EXCEPTION_HANDLERS[t] for t in type(exc).__mro__ if t in EXCEPTION_HANDLERS), _handle_unexpected)
    app: Litestar = scope["litestar_app"]
    request: Request[Any, Any, Any] = app.request_class(scope=scope, receive=receive, send=send)
    response = handler(request, exc)
    await response.to_asgi_response(app=None, request=request, type_encoders=app.type_encoders)(scope, receive, send)


def observe_requests(app: Litestar, *, app_name: str, settings: Settings) -> None:
    """Wrap the app's ASGI handler (outside Litestar's routing and error mapping, so 404s and 500s count too):
    a request id for the request's context and response, and, with metrics on, its count and latency by route
    template. Wrapped here rather than as Litestar middleware, which runs only for routes that matched."""
    inner: ASGIApp = app.asgi_handler
    access_log = settings.access_log
    observe = metrics.REQUESTS.observe
    perf_counter = time.perf_counter

    async def observed(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:  # lifespan and websockets pass through
            await inner(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == _REQUEST_ID_HEADER_BYTES:
                request_id = accepted_request_id(value.decode("latin-1"))
                break
        if request_id is None:
            request_id = new_request_id()
        token = REQUEST_ID.set(request_id)
        id_header = (_REQUEST_ID_HEADER_BYTES, request_id.encode())
        status = 500
        started = perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # a copy: a ready-made response may hand every request the same message
                message = {**message, "headers": [*message.get("headers", ()), id_header]}
            await send(message)

        try:
            await inner(scope, receive, send_with_id)
        finally:
            elapsed = perf_counter() - started
            route = scope.get("path_template") or metrics.UNMATCHED_ROUTE
            method = scope["method"]
            observe(app_name, method, route, status, elapsed)
            if access_log:
                access_logger.info(
                    "%s %s %s",
                    method,
                    route,
                    status,
                    extra={"method": method, "route": route, "status": status, "duration_ms": round(elapsed * 1e3, 2)},
                )
            REQUEST_ID.reset(token)

    app.asgi_handler = observed


class SecretThrottle(Protocol):
    """What a route checking a secret of its own needs from the failed-auth limiter (auth/throttle.py, above)."""

    def refuse_if_guessing(self, address: str | None) -> str:
        """429 (RateLimited) for an address guessing too much; else the limiter key to count a failure under."""
        ...

    async def record_failure(self, key: str, secret: str | None) -> None: ...


def metrics_route(settings: Settings, throttle: SecretThrottle | None = None) -> HTTPRouteHandler:
    """``GET /metrics``: 404 unless a metrics token is configured (off the public listener by default), then only
    with ``Authorization: Bearer <metrics token>``; wrong tokens count towards ``throttle``'s failed-auth limit,
    like every other secret's."""
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None

    @get("/metrics", include_in_schema=False, media_type="text/plain")
    async def expose(request: Request[Any, Any, Any]) -> Response[bytes]:
        if not token:
            raise NotFoundException()
        authorization = request.headers.get("authorization")
        key = throttle.refuse_if_guessing(request.client.host if request.client else None) if throttle else None
        if not metrics.bearer_matches(authorization, token):
            if throttle is not None and key is not None:
                await throttle.record_failure(key, authorization)
            raise AuthenticationRequired("send Authorization: Bearer <metrics token>")
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    return expose
