"""JSON read strictly: nesting bounded before any parser recurses, duplicated keys refused. Standard library only.

Python's ``json`` (like msgspec and pydantic) recurses once per level, so 100,000 ``[`` raise RecursionError from
deep inside the parser; the depth is therefore measured first, on the raw bytes, without recursion. A duplicated key
is read as its last value by ``json`` and as its first by some other parsers (a parser differential a proxy or an
audit tool could be fooled by), so it is refused rather than resolved. HTTP bodies (``json_bodies.py``), CLI options
and offline files all read JSON through ``loads``.
"""

from __future__ import annotations

import json
from itertools import accumulate
from typing import Any

MAX_DEPTH = 32

_NOT_A_BRACKET = bytes(sorted(set(range(256)) - set(b"[]{}")))
_DEPTH_CHANGE = [0] * 256
for _opening in b"[{":
    _DEPTH_CHANGE[_opening] = 1
for _closing in b"]}":
    _DEPTH_CHANGE[_closing] = -1
_SCAN_CHUNK = 4096


class StrictJsonError(ValueError):
    """The text is JSON but not acceptable: too deep, or a key appears twice."""


class TooDeep(StrictJsonError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"nested more than {limit} levels deep")
        self.limit = limit


class DuplicateKey(StrictJsonError):
    def __init__(self, key: str) -> None:
        super().__init__(f"the key {key!r} appears more than once")
        self.key = key


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)  # in C: the common case (no duplicate) costs one comparison more than plain ``json``
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return result


def _outside_strings(data: bytes) -> bytes:
    """``data`` with the contents of its JSON strings removed, so brackets inside them do not count.

    Escaped backslashes go first, then escaped quotes; what remains of a string has no quote inside, so splitting on
    quotes alternates outside/inside. (Outside strings a backslash is invalid JSON, which the parser refuses anyway.)
    """
    unescaped = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    return b"".join(unescaped.split(b'"')[::2])


def nested_deeper_than(data: bytes, limit: int) -> bool:
    """Whether arrays and objects in ``data`` nest deeper than ``limit``, found without parsing and without recursion.

    The running sum of the brackets outside strings is the depth. Each step runs in C (``split``, ``translate``,
    ``accumulate``), chunk by chunk so a deep text is refused at its first chunk: about 50 ms for the worst 1 MiB
    (shallow brackets throughout), the same order as parsing it. Malformed JSON gets some answer, and the parser
    refuses it afterwards either way.
    """
    brackets = _outside_strings(data).translate(None, _NOT_A_BRACKET)
    depth = 0
    for start in range(0, len(brackets), _SCAN_CHUNK):
        chunk = brackets[start : start + _SCAN_CHUNK]
        running = list(accumulate(map(_DEPTH_CHANGE.__getitem__, chunk), initial=depth))
        if max(running) > limit:
            return True
        depth = running[-1]
    return False


def loads(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` that raises TooDeep or DuplicateKey first; malformed text raises ``json``'s own ValueError.

    A ``str`` is encoded as UTF-8 (lone surrogates, e.g. from undecodable bytes, raise UnicodeEncodeError, also a
    ValueError).
    """
    raw = data.encode() if isinstance(data, str) else data
    if nested_deeper_than(raw, max_depth):
        raise TooDeep(max_depth)
    return json.loads(raw, object_pairs_hook=_refuse_duplicates)  # bounded above: this cannot recurse far
