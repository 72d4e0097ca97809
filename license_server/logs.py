"""The one logging setup of ``serve``, ``scheduler`` and ``edge``, and the request id every line of a request carries.

Format: JSON lines (one object a line: ``ts``, ``level``, ``logger``, ``message``, ``request_id`` inside a request,
the structured fields a call passes with ``extra``, ``exc_info`` for a traceback) when stderr is not a terminal, as
under a container runtime or systemd; readable console lines on a terminal. ``LICENSE_SERVER_LOG_FORMAT`` forces
either. Nothing secret is logged: callers log ids and counts, never tokens, keys, passphrases or bodies.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import secrets
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

LogFormat = Literal["auto", "json", "console"]
REQUEST_ID: ContextVar[str | None] = ContextVar("license_server_request_id", default=None)
REQUEST_ID_HEADER = "x-request-id"
# What a caller's X-Request-Id may be to be adopted: short, printable, no spaces or quotes (it goes into logs and
# headers verbatim). Anything else is replaced by an id of our own.
_ACCEPTED_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")
# Libraries that narrate every step (a line per job run, every few seconds); their warnings still get through.
_NOISY_LOGGERS = ("alembic", "apscheduler", "aiosqlite")
# LogRecord's own attributes; any other attribute came from ``extra=`` and is a structured field of the line.
# uvicorn's color_message repeats the message with terminal colour codes.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "color_message",
}


# A made id is this process's random prefix and a counter: unique across processes and restarts, as an id of
# random bits would be, without a call for random bytes on every request (ids are not secrets).
_ID_PREFIX = secrets.token_hex(8)
_ID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def accepted_request_id(presented: str | None) -> str:
    """The caller's request id if well-formed, else a new one."""
    if presented is not None and _ACCEPTED_REQUEST_ID.fullmatch(presented):
        return presented
    return new_request_id()


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key, value in vars(record).items() if key not in _RECORD_ATTRIBUTES}


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _fields(record).items():
            if value is not None or key != "request_id":
                line.setdefault(key, value)
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """``time LEVEL logger [request id] message key=value ...``, for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        request_id = fields.pop("request_id", None)
        text = super().format(record)
        head, _, rest = text.partition(f" {record.name} ")
        prefix = f"{head} {record.name}" + (f" [{request_id}]" if request_id else "")
        extras = "".join(f" {key}={value}" for key, value in fields.items())
        first, newline, tail = rest.partition("\n")  # a traceback stays below the line
        return f"{prefix} {first}{extras}{newline}{tail}"


def resolve_format(log_format: LogFormat, stream: TextIO) -> Literal["json", "console"]:
    if log_format != "auto":
        return log_format
    isatty = getattr(stream, "isatty", None)
    return "console" if callable(isatty) and isatty() else "json"


def configure_logging(
    level: str | int = "INFO", log_format: LogFormat = "auto", *, stream: TextIO | None = None
) -> None:
    """Send every logger's lines (ours, uvicorn's, SQLAlchemy's) to stderr in one format; replaces earlier setup."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if resolve_format(log_format, stream) == "json" else ConsoleFormatter())
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # uvicorn's loggers keep handlers of their own when it configures logging; ours are the only ones.
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # Access lines are ours (LICENSE_SERVER_ACCESS_LOG: route template, request id). uvicorn writes its own whenever
    # its access logger has a handler, its parents' included, whatever --no-access-log said: none, then.
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    for noisy in _NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
