"""JSON request bodies that parse but mean two things are refused before any handler sees them.

A duplicated key is read as its last value by our parser and as its first by some others (a parser differential a
proxy or an audit tool could be fooled by); a body nested hundreds deep costs recursion everywhere it is walked.
Both get a 400 problem naming the field. Malformed or non-UTF-8 bodies are left to the framework's parser, whose
errors the one error mapping in ``app.py`` already turns into problems.
"""

from __future__ import annotations

import json
from typing import Any

from litestar import Request

from license_server.errors import ValidationFailed

MAX_JSON_DEPTH = 32
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


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


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def check_json_body(body: bytes) -> None:
    """Raise ValidationFailed for a duplicated key or excessive nesting; anything else passes through."""
    if not body:
        return
    try:
        parsed = json.loads(body, object_pairs_hook=_refuse_duplicates)
    except _DuplicateKey as exc:
        raise ValidationFailed(f"the key {exc.key!r} appears more than once", field=exc.key) from None
    except RecursionError:
        parsed = None
        deep = True
    except ValueError:  # malformed JSON or invalid UTF-8: the framework's parser reports it
        return
    else:
        deep = _depth_exceeds(parsed, MAX_JSON_DEPTH)
    if deep:
        raise ValidationFailed(f"the body is nested more than {MAX_JSON_DEPTH} levels deep", field="body")


async def reject_ambiguous_json(request: Request[Any, Any, Any]) -> None:
    """``before_request`` hook: runs after the guards, before the body is parsed into the handler's model."""
    if request.method not in _BODY_METHODS or "json" not in request.headers.get("content-type", ""):
        return
    check_json_body(await request.body())
