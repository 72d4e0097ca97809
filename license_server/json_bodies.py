"""One set of rules for every request body, whatever its Content-Type says, applied before any parser sees it.

Litestar decodes a handler's ``data`` as JSON whatever the Content-Type, so rules keyed on the type are rules a
client can opt out of: ``text/plain`` once skipped the duplicate-key check (``{"role": "viewer", "role": "owner"}``
made an owner token) and the depth bound (100,000 ``[`` recursed until a 500). So:

- a non-empty body must be JSON (``application/json`` or ``application/*+json``, UTF-8 if a charset is named);
  anything else, and no Content-Type at all, is a 415 ``unsupported_media_type``. Every route here takes JSON.
- nesting deeper than ``MAX_JSON_DEPTH`` is a 400, measured on the raw bytes without recursing, before any parser
  (``json``, msgspec, pydantic) walks the body recursively;
- a duplicated key is a 400 naming it: our parser reads the last value, some others the first (a parser
  differential a proxy or an audit tool could be fooled by).

Malformed or non-UTF-8 JSON is left to the framework's parser, whose errors the one error mapping in ``app.py``
already turns into problems.
"""

from __future__ import annotations

import json
from itertools import accumulate
from typing import Any

from litestar import Litestar, Request
from litestar.openapi import ResponseSpec

from license_server.errors import UnsupportedMediaType, ValidationFailed
from license_server.schemas_common import problem_spec

MAX_JSON_DEPTH = 32
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_NOT_A_BRACKET = bytes(sorted(set(range(256)) - set(b"[]{}")))
_DEPTH_CHANGE = [0] * 256
for _opening in b"[{":
    _DEPTH_CHANGE[_opening] = 1
for _closing in b"]}":
    _DEPTH_CHANGE[_closing] = -1
_SCAN_CHUNK = 4096


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _outside_strings(body: bytes) -> bytes:
    """``body`` with the contents of its JSON strings removed, so brackets inside them do not count.

    Escaped backslashes go first, then escaped quotes; what remains of a string has no quote inside, so splitting on
    quotes alternates outside/inside. (Outside strings a backslash is invalid JSON, which the parser refuses anyway.)
    """
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    return b"".join(unescaped.split(b'"')[::2])


def nested_deeper_than(body: bytes, limit: int) -> bool:
    """Whether arrays and objects in ``body`` nest deeper than ``limit``, found without parsing and without recursion.

    The running sum of the brackets outside strings is the depth. Each step runs in C (``split``, ``translate``,
    ``accumulate``), chunk by chunk so a deep body is refused at its first chunk: about 50 ms for the worst 1 MiB
    body (shallow brackets throughout), the same order as parsing it. Malformed JSON gets some answer, and the
    parser refuses it afterwards either way.
    """
    brackets = _outside_strings(body).translate(None, _NOT_A_BRACKET)
    depth = 0
    for start in range(0, len(brackets), _SCAN_CHUNK):
        running = list(accumulate(map(_DEPTH_CHANGE.__getitem__, brackets[start : start + _SCAN_CHUNK]), initial=depth))
        if max(running) > limit:
            return True
        depth = running[-1]
    return False


def check_json_body(body: bytes) -> None:
    """Raise ValidationFailed for excessive nesting or a duplicated key; anything else passes through."""
    if not body:
        return
    if nested_deeper_than(body, MAX_JSON_DEPTH):
        raise ValidationFailed(f"the body is nested more than {MAX_JSON_DEPTH} levels deep", field="body")
    try:
        json.loads(body, object_pairs_hook=_refuse_duplicates)  # bounded above: this cannot recurse far
    except _DuplicateKey as exc:
        raise ValidationFailed(f"the key {exc.key!r} appears more than once", field=exc.key) from None
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
    if request.method not in _BODY_METHODS:
        return
    body = await request.body()
    if not body:  # nothing to parse; a route that needs a body answers its own 400
        return
    if not is_json_media_type(request.headers.get("content-type")):
        raise UnsupportedMediaType("send the body as JSON with Content-Type: application/json", field="content-type")
    check_json_body(body)


def document_body_rules(app: Litestar) -> None:
    """Declare the 415 on every operation that takes a body, so the OpenAPI schema says what the hook does."""
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            if "data" in handler.parsed_fn_signature.parameters:
                responses: dict[int, ResponseSpec] = dict(handler.responses or {})
                responses.setdefault(415, problem_spec("The body is not JSON (`Content-Type: application/json`)"))
                handler.responses = responses
