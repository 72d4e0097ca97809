"""What every command shares: settings, a runtime with a session, output in human or JSON form, errors."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Any, NoReturn, TypeVar

import click
from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.config import Settings
from license_server.errors import FieldError, LicenseServerError, ValidationFailed
from license_server.runtime import Runtime
from license_server.schemas_common import UTCTimestamp

T = TypeVar("T")
_TIMESTAMP: TypeAdapter[datetime] = TypeAdapter(UTCTimestamp)
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object, for scripts.")


def settings() -> Settings:
    return Settings()


def fail(message: str, code: str = "error", *, as_json: bool = False, exit_code: int = 1) -> NoReturn:
    if as_json:
        click.echo(json.dumps({"error": code, "detail": message}))
    else:
        click.echo(f"error [{code}]: {message}", err=True)
    sys.exit(exit_code)


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
        fields = "".join(f" ({e.field}: {e.message})" for e in exc.field_errors if e.message not in exc.detail)
        fail(exc.detail + fields, exc.code, as_json=as_json)


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


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
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
