"""The raw-byte depth scan agrees with the parsed depth, never recurses, and the JSON media types are the right ones."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import hypothesis
import pytest
from hypothesis import strategies as st

from license_server.errors import ValidationFailed
from license_server.json_bodies import MAX_JSON_DEPTH, check_json_body, is_json_media_type
from license_server.strict_json import nested_deeper_than

# Strings full of what could fool a byte scanner: brackets, quotes, backslashes, escapes.
TRICKY_TEXT = st.text(alphabet=st.sampled_from('[]{}"\\/ u0aé\n'), max_size=12)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | TRICKY_TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TRICKY_TEXT, children, max_size=3),
    max_leaves=60,
)


def parsed_depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(parsed_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(parsed_depth, value.values()), default=0)
    return 0


@hypothesis.settings(max_examples=400, deadline=None, database=None)
@hypothesis.given(value=JSON_VALUES, limit=st.integers(0, 8), ensure_ascii=st.booleans())
def test_the_byte_scan_agrees_with_the_parsed_depth(value: Any, limit: int, ensure_ascii: bool) -> None:
    body = json.dumps(value, ensure_ascii=ensure_ascii).encode()
    assert nested_deeper_than(body, limit) == (parsed_depth(value) > limit), body


@pytest.mark.parametrize("opening", ["[", '{"a":'])
def test_a_million_levels_are_measured_without_recursion_in_milliseconds(opening: str) -> None:
    body = (opening * 1_000_000).encode()
    started = time.perf_counter()
    assert nested_deeper_than(body, MAX_JSON_DEPTH)
    assert time.perf_counter() - started < 1.0
    assert sys.getrecursionlimit() < 1_000_000  # so a recursive scan could not have done it


def test_exactly_the_limit_passes_and_one_more_is_refused() -> None:
    at_limit = ("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH).encode()
    check_json_body(at_limit)
    with pytest.raises(ValidationFailed) as refused:
        check_json_body(b"[" + at_limit + b"]")
    assert refused.value.field == "body"


def test_a_truncated_deep_body_is_refused_for_its_depth_not_left_to_a_recursive_parser() -> None:
    with pytest.raises(ValidationFailed, match="nested more than 32"):
        check_json_body(b"[" * 100_000)


@pytest.mark.parametrize(
    ("content_type", "is_json"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ('APPLICATION/JSON; Charset="UTF-8"', True),
        ("application/merge-patch+json", True),
        ("application/problem+json", True),
        (None, False),
        ("", False),
        ("text/plain", False),
        ("text/json", False),
        ("application/x-www-form-urlencoded", False),
        ("multipart/form-data; boundary=x", False),
        ("application/jsonp", False),
        ("application/json; charset=latin-1", False),
        ("application/json; charset=utf-16", False),
    ],
)
def test_json_media_types(content_type: str | None, is_json: bool) -> None:
    assert is_json_media_type(content_type) is is_json
