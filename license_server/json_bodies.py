"""One set of rules for every request body, whatever its Content-Type says, applied before any parser sees it.

Litestar decodes a handler's ``data`` as JSON whatever the Content-Type, so rules keyed on the type are rules a
client can opt out of: ``text/plain`` once skipped the duplicate-key check (``{"role": "viewer", "role": "owner"}``
made an owner token) and the depth bound (100,000 ``[`` recursed until a 500). So:

- a non-empty body must be JSON (``application/json`` or ``application/*+json``, UTF-8 if a charset is named);
  anything else, and no Content-Type at all, is a 415 ``unsupported_media_type``. Every route here takes JSON.
- nesting deeper than ``MAX_JSON_DEPTH`` is a 400, measured on the raw bytes without recursing, before any parser
  (``json``, msgspec, pydantic) walks the body recursively; a duplicated key is a 400 naming it
  (``strict_json.py`` says why, and reads CLI options and offline files by the same rules).

Malformed or non-UTF-8 JSON is left to the framework's parser, whose errors the one error mapping in ``app.py``
already turns into problems.
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request
from litestar.openapi import ResponseSpec

from license_server import strict_json
from license_server.errors import UnsupportedMediaType, ValidationFailed
from license_server.schemas_common import problem_spec

MAX_JSON_DEPTH = strict_json.MAX_DEPTH
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def check_json_body(body: bytes) -> None:
    """Raise ValidationFailed for excessive nesting or a duplicated key; anything else passes through."""
    if not body:
        return
    try:
        strict_json.loads(body, max_depth=MAX_JSON_DEPTH)
    except strict_json.TooDeep as exc:
        raise ValidationFailed(f"the body is {exc}", field="body") from None
    except strict_json.DuplicateKey as exc:
        raise ValidationFailed(str(exc), field=exc.key) from None
    except ValueError:  # malformed JSON or invalid UTF-8: the framework's parser reports it
        return


def is_json_media_type(content_type: str | None) -> bool:
    """``application/json`` or ``application/<anything>+json``, with no charset or UTF-8 (RFC 8259 §8.1)."""
    if not content_type:
        return False
    media_type, *parameters = (part.strip().lower() for part in content_type.split(";"))
    kind, _, subtype = media_type.partition("/")
    if kind != "application" or not (subtype == "json" or subtype.endswith("+json")):
        return False
    charsets = [value.strip('"') for name, _, value in (p.partition("=") for p in parameters) if name == "charset"]
    return all(charset in {"utf-8", "utf8"} for charset in charsets)


async def enforce_json_bodies(request: Request[Any, Any, Any]) -> None:
    """``before_request`` hook of the vendor and edge apps: runs after the guards, before any body is parsed."""
    check_json_body(await json_typed_body(request))


async def json_typed_body(request: Request[Any, Any, Any]) -> bytes:
    """The body, once its Content-Type passed (415 otherwise); empty for a method without one. A route's own hook
    that proves the JSON rules by its stricter parse (``billing/usage/events.py``) calls ``check_json_body`` itself
    on whatever it does not prove."""
    if request.method not in _BODY_METHODS:
        return b""
    body = await request.body()
    if not body:  # nothing to parse; a route that needs a body answers its own 400
        return b""
    if not is_json_media_type(request.headers.get("content-type")):
        raise UnsupportedMediaType("send the body as JSON with Content-Type: application/json", field="content-type")
    return body


def document_body_rules(app: Litestar) -> None:
    """Declare the 415 and 413 on every operation that takes a body, so the OpenAPI schema says what the hook and
    the body size limit do."""
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            if "data" in handler.parsed_fn_signature.parameters:
                responses: dict[int, ResponseSpec] = dict(handler.responses or {})
                responses.setdefault(415, problem_spec("The body is not JSON (`Content-Type: application/json`)"))
                responses.setdefault(413, problem_spec("The body is over the 1 MiB request size limit"))
                handler.responses = responses
