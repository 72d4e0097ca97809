"""Cheap reading of small, flat JSON request bodies for the hot write routes, never looser than the full path.

``read_flat_object`` answers a dict only for a body that every rule of the full path (``json_bodies.py``'s strict
JSON, then the route's pydantic model) would accept with the same meaning; ``None`` means "not sure": the caller
hands the request to the full path, which answers it — refusals included — exactly as it always has. So the problem
responses (codes, ``errors[].field``) stay the full path's, and this module only has to be right about what it
accepts:

- at most ``MAX_FAST_BODY_BYTES``, exactly one JSON object with no nested array or object (no bracket anywhere else,
  not even inside a string), no key twice, UTF-8 without a BOM;
- then each ``Field`` checks its value: ``StrictInt`` ranges (``bool`` is not an ``int`` here), strings fully
  matched by the model's pattern, required fields present, unknown fields absent (``extra="forbid"``).

Shared by any route that wants it (it imports only the standard library).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

MAX_FAST_BODY_BYTES = 4096
_MISSING = object()


class _Duplicate(Exception):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _Duplicate
    return result


@dataclass(frozen=True)
class Field:
    """One field of a flat body: an integer in [low, high], or a string fully matching ``pattern``."""

    name: str
    low: int | None = None
    high: int | None = None
    pattern: re.Pattern[str] | None = None
    default: Any = _MISSING

    def accepts(self, value: Any) -> bool:
        if self.pattern is not None:
            return type(value) is str and self.pattern.fullmatch(value) is not None
        assert self.low is not None
        assert self.high is not None
        return type(value) is int and self.low <= value <= self.high


@dataclass(frozen=True)
class FlatBody:
    fields: tuple[Field, ...]

    @cached_property
    def names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields)

    def read(self, body: bytes) -> dict[str, Any] | None:
        """The body's fields (defaults filled in), or None when only the full path can say."""
        parsed = read_flat_object(body)
        if parsed is None or not parsed.keys() <= self.names:  # a key the model does not know: refused there
            return None
        result: dict[str, Any] = {}
        for field in self.fields:
            value = parsed.get(field.name, _MISSING)
            if value is _MISSING:
                if field.default is _MISSING:
                    return None
                value = field.default
            elif not field.accepts(value):
                return None
            result[field.name] = value
        return result


# What json.loads(..., object_pairs_hook=_pairs) builds per call (its scanner included), built once.
_DECODER = json.JSONDecoder(object_pairs_hook=_pairs)


def read_flat_object(body: bytes) -> dict[str, Any] | None:
    """A small JSON object of scalars, or None (too big, nested, a duplicated key, malformed, not UTF-8, ...)."""
    if len(body) > MAX_FAST_BODY_BYTES or body.count(b"{") != 1 or body.count(b"}") != 1 or b"[" in body:
        return None
    try:
        # Decoded here as strict UTF-8: ``json.loads`` of bytes would also take UTF-16 or -32 and skip a BOM.
        parsed = _DECODER.decode(body.decode("utf-8"))
    except (ValueError, _Duplicate, RecursionError):
        return None
    return parsed if type(parsed) is dict else None
