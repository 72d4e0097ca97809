"""The one logging setup: JSON lines off a terminal, console lines on one, the request id on both."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from license_server.logs import REQUEST_ID, accepted_request_id, configure_logging, resolve_format


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_auto_is_console_on_a_terminal_and_json_otherwise() -> None:
    assert resolve_format("auto", _Terminal()) == "console"
    assert resolve_format("auto", io.StringIO()) == "json"
    assert resolve_format("json", _Terminal()) == "json"
    assert resolve_format("console", io.StringIO()) == "console"


def test_json_lines_carry_fields_the_request_id_and_tracebacks() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    token = REQUEST_ID.set("req-123")
    try:
        logging.getLogger("license_server.test").info("swept %d", 3, extra={"licenses_changed": 3})
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("license_server.test").exception("failed")
    finally:
        REQUEST_ID.reset(token)
    logging.getLogger("license_server.test").warning("outside a request")
    first, second, third = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "swept 3"
    assert first["licenses_changed"] == 3
    assert first["request_id"] == "req-123"
    assert first["level"] == "INFO"
    assert first["ts"].endswith("Z")
    assert "ValueError: boom" in second["exc_info"]
    assert "request_id" not in third


def test_console_lines_are_readable_with_the_request_id() -> None:
    stream = _Terminal()
    configure_logging("INFO", "auto", stream=stream)
    token = REQUEST_ID.set("req-456")
    try:
        logging.getLogger("license_server.test").info("polled", extra={"status": 200})
    finally:
        REQUEST_ID.reset(token)
    line = stream.getvalue().strip()
    assert "INFO" in line
    assert "license_server.test [req-456] polled status=200" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


@pytest.mark.parametrize("presented", [None, "", "x" * 129, "has space", 'quote"d', "new\nline", "-leading-dash"])
def test_a_malformed_request_id_is_replaced(presented: str | None) -> None:
    made = accepted_request_id(presented)
    assert made != presented
    assert len(made) == 32


def test_a_well_formed_request_id_is_kept() -> None:
    assert accepted_request_id("trace-01.a:b_c") == "trace-01.a:b_c"
