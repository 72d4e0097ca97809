"""Reading the console's HTML forms into typed values, with the same 400 ``validation_error`` + field the API gives."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

from litestar import Request
from litestar.datastructures import FormMultiDict, UploadFile

from license_server.errors import ValidationFailed

MAX_UPLOAD_BYTES = 256 * 1024  # an activation request is a few kilobytes


async def read_form(request: Request[Any, Any, Any]) -> FormMultiDict:
    return await request.form()


def text(form: FormMultiDict, name: str, *, required: bool = True, max_length: int = 500) -> str:
    value = form.get(name)
    value = value.strip() if isinstance(value, str) else ""
    if required and not value:
        raise ValidationFailed(f"{name} is required", field=name)
    if len(value) > max_length:
        raise ValidationFailed(f"{name} must have at most {max_length} characters", field=name)
    return value


def optional_uuid(value: str | None, name: str) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise ValidationFailed(f"{name} must be an id", field=name) from exc


def day_end(form: FormMultiDict, name: str) -> datetime:
    """A date (YYYY-MM-DD, what <input type=date> sends) as the end of that day, UTC."""
    raw = text(form, name, max_length=10)
    try:
        day = datetime.strptime(raw, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError as exc:
        raise ValidationFailed(f"{name} must be a date (YYYY-MM-DD)", field=name) from exc
    return datetime.combine(day.date(), time(23, 59, 59), tzinfo=UTC)


def optional_day_end(form: FormMultiDict, name: str) -> datetime | None:
    return day_end(form, name) if text(form, name, required=False) else None


def whole_number(form: FormMultiDict, name: str, *, required: bool = True, maximum: int = 10**15) -> int | None:
    raw = text(form, name, required=required, max_length=20)
    if not raw:
        return None
    if not raw.isdigit() or int(raw) > maximum:
        raise ValidationFailed(f"{name} must be a whole number from 0 to {maximum}", field=name)
    return int(raw)


def decimal_amount(form: FormMultiDict, name: str) -> Decimal:
    raw = text(form, name, max_length=40)
    try:
        value = Decimal(raw)
    except InvalidOperation as exc:
        raise ValidationFailed(f"{name} must be a decimal number", field=name) from exc
    if not value.is_finite():
        raise ValidationFailed(f"{name} must be a decimal number", field=name)
    return value


async def uploaded_bytes(form: FormMultiDict, name: str) -> bytes:
    upload = form.get(name)
    if not isinstance(upload, UploadFile):
        raise ValidationFailed(f"choose a file for {name}", field=name)
    content = await upload.read(MAX_UPLOAD_BYTES + 1)
    if not content:
        raise ValidationFailed(f"{name} is empty", field=name)
    if len(content) > MAX_UPLOAD_BYTES:
        raise ValidationFailed(f"{name} must be at most {MAX_UPLOAD_BYTES // 1024} KiB", field=name)
    return content
