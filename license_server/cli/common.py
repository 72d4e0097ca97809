"""What every command shares: settings, a runtime with a session, output in human or JSON form, errors."""

from __future__ import annotations

import asyncio
import errno
import json
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from license_server import strict_json
from license_server.config import Settings
from license_server.errors import FieldError, LicenseServerError, ValidationFailed
from license_server.runtime import Runtime
from license_server.schemas_common import UTCTimestamp

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar

T = TypeVar("T")
_TIMESTAMP: TypeAdapter[datetime] = TypeAdapter(UTCTimestamp)
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object, for scripts.")


def settings() -> Settings:
    return Settings()


def fail(
    message: str,
    code: str = "error",
    *,
    as_json: bool = False,
    exit_code: int = 1,
    fields: list[FieldError] | None = None,
) -> NoReturn:
    """Every command's one error shape: ``{"error": code, "detail": text, "fields": [{field, message}]}`` on stdout
    under --json (so a script reads one object whatever went wrong), one ``error [code]: text`` line on stderr
    otherwise; a non-zero exit either way (2 for usage errors, as click's own)."""
    if as_json:
        problems = [{"field": e.field, "message": e.message} for e in fields or []]
        click.echo(json.dumps({"error": code, "detail": message, "fields": problems}))
    else:
        click.echo(f"error [{code}]: {message}", err=True)
    sys.exit(exit_code)


def usage_error(message: str, *, as_json: bool = False) -> NoReturn:
    """A wrong option value: one line (or one JSON object) and exit 2, as click's own usage errors exit."""
    fail(message, "usage_error", as_json=as_json, exit_code=2)


def parse_json_option(raw: str, option: str, *, as_json: bool = False) -> Any:
    """An option whose value is JSON, read by the rules HTTP bodies follow (nesting bounded, no duplicate keys)."""
    try:
        return strict_json.loads(raw)
    except strict_json.StrictJsonError as exc:
        usage_error(f"{option}: {exc}", as_json=as_json)
    except ValueError as exc:  # not JSON, or not encodable as UTF-8
        usage_error(f"{option}: not valid JSON ({exc})", as_json=as_json)


def report_error(exc: LicenseServerError, *, as_json: bool = False) -> NoReturn:
    fields = "".join(f" ({e.field}: {e.message})" for e in exc.field_errors if e.message not in exc.detail)
    fail(exc.detail + fields, exc.code, as_json=as_json, fields=list(exc.field_errors))


def listening_socket(host: str, port: int) -> socket.socket:
    """The server's socket, bound before anything starts: a busy port is one line and exit 1, not a failed startup.

    uvicorn binds only after the app's startup (scheduler, database pool), and a failure there unwinds all of it
    through ~150 lines of tracebacks. Bound here, the socket is handed to uvicorn, which listens on it.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn decides
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            fail(f"port {port} on {host} is in use", "port_in_use")
        fail(f"cannot listen on port {port} on {host}: {exc.strerror or exc}", "cannot_listen")
    return sock


def serve_on(sock: socket.socket, app: Any, *, log_level: str) -> None:
    import uvicorn

    # proxy_headers=False: uvicorn would believe X-Forwarded-For from any loopback peer, letting a local client pick
    # the address rate limits count against; the app applies LICENSE_SERVER_TRUSTED_PROXIES instead.
    # log_config=None: uvicorn's lines go through the process's one logging setup (license_server.logs), in its
    # format; access lines are ours (LICENSE_SERVER_ACCESS_LOG, with route template and request id), not uvicorn's.
    config = uvicorn.Config(
        app, log_level=log_level, server_header=False, proxy_headers=False, log_config=None, access_log=False
    )
    uvicorn.Server(config).run(sockets=[sock])


def run_with_session(work: Callable[[Runtime, AsyncSession], Awaitable[T]], *, as_json: bool = False) -> T:
    """Run one service call in its own runtime and session, turning domain errors into a clean exit."""

    async def main() -> T:
        runtime = Runtime.build(settings())
        try:
            async with runtime.session_factory() as session:
                return await work(runtime, session)
        finally:
            await runtime.close()

    try:
        return asyncio.run(main())
    except LicenseServerError as exc:
        report_error(exc, as_json=as_json)


def parse_timestamp(value: str | None, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed: datetime = _TIMESTAMP.validate_python(value)
    except ValidationError as exc:
        raise click.BadParameter(exc.errors()[0]["msg"], param_hint=f"--{field}") from exc
    return parsed


def parse_model(model: type[BaseModel], raw: str, field: str) -> Any:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = [FieldError(".".join([field, *map(str, e["loc"])]), e["msg"]) for e in exc.errors()]
        raise ValidationFailed("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors) from exc


def emit(payload: dict[str, Any], *, as_json: bool, human: str | None = None) -> None:
    if as_json:
        click.echo(json.dumps(payload, default=_json_default))
    else:
        click.echo(human if human is not None else _human(payload))


def emit_list(
    items: Sequence[Any],
    *,
    as_json: bool,
    things: str,
    row: Callable[[Any], str],
    total: int | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> None:
    """Every list command's one shape, the HTTP API's page: ``{"items", "total", "limit", "offset"}``.

    A list that is not paged answers ``limit: null`` and its length as ``total``. Items are dicts or pydantic models;
    ``row`` renders one item as a text line; an empty list says ``No <things>.`` rather than nothing.
    """
    if as_json:
        payload = [model_payload(i) if isinstance(i, BaseModel) else i for i in items]
        page = {"items": payload, "total": len(items) if total is None else total, "limit": limit, "offset": offset}
        emit(page, as_json=True)
        return
    if not items:
        click.echo(f"No {things}.")
        return
    for item in items:
        click.echo(row(item))


@contextmanager
def progress_on_stderr(label: str) -> Iterator[Callable[[int, int], None]]:
    """A ``(done, total)`` callback drawing a progress bar on a terminal's stderr; nothing when stderr is not a
    terminal (a script's log stays clean) and never on stdout (where --json output goes)."""
    bars: list[ProgressBar[int]] = []

    def report(done: int, total: int) -> None:
        if not sys.stderr.isatty():
            return
        if not bars:
            bars.append(click.progressbar(length=total, label=label, file=sys.stderr))
            bars[0].__enter__()
        bars[0].update(done - bars[0].pos)

    try:
        yield report
    finally:
        for bar in bars:
            bar.__exit__(None, None, None)


def timestamp_text(value: datetime) -> str:
    """The one timestamp format, as the HTTP API writes it (pydantic's): ISO 8601 in UTC with a ``Z``."""
    if value.tzinfo is None:  # SQLite hands back naive datetimes; every stored timestamp is UTC
        value = value.replace(tzinfo=UTC)
    text = value.astimezone(UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return timestamp_text(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _human(payload: dict[str, Any], indent: str = "") -> str:
    lines = []
    for key, value in payload.items():
        if isinstance(value, dict) and value:
            lines.append(f"{indent}{key}:")
            lines.append(_human(value, indent + "  "))
        else:
            shown = (
                "-"
                if value is None or value == {}
                else _json_default(value)
                if not isinstance(value, str | int | float | bool)
                else value
            )
            lines.append(f"{indent}{key}: {shown}")
    return "\n".join(lines)


def model_payload(model: BaseModel) -> dict[str, Any]:
    data: dict[str, Any] = model.model_dump(mode="json")
    return data
