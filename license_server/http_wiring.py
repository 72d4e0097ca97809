"""The HTTP rules both app factories (the vendor's ``app`` and the ``edge``) share: the one mapping from errors to
RFC 9457 problem details, and the request body size limit.

Here, below both factories, so the edge does not import the vendor app to get them.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ExceptionHandlersMap

from license_server.errors import LicenseServerError
from license_server.schemas_common import PROBLEM_MEDIA_TYPE, FieldProblem, Problem

logger = logging.getLogger("license_server")
MAX_REQUEST_BODY_BYTES = 1024 * 1024


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
