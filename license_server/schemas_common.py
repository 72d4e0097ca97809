"""Shapes shared by every domain's API: pagination, problem details, and date input."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Annotated, Any, ClassVar, Generic, TypeVar

from litestar.openapi import ResponseSpec
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from license_server.errors import ValidationFailed

T = TypeVar("T")
EARLIEST, LATEST = datetime(1970, 1, 2, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC)


def _date_means_midnight_utc(value: Any) -> Any:
    """``YYYY-MM-DD`` (or a date) means 00:00 UTC that day; pydantic would otherwise read it as a naive datetime.

    Numbers (and numeric strings) are refused: pydantic would read them as Unix times, which the schema (an RFC 3339
    string) does not offer and a typo would silently turn into a date.
    """
    if isinstance(value, bool | int | float) or (
        isinstance(value, str) and value.strip().lstrip("+-").replace(".", "").isdigit()
    ):
        raise ValueError("a timestamp is an RFC 3339 string with an offset or a date YYYY-MM-DD, not a number")
    if isinstance(value, str) and len(value) == 10:
        try:
            value = date.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime.combine(value, time(0), tzinfo=UTC)
    return value


def _to_utc(value: datetime) -> datetime:
    """A timestamp must carry an offset; it is converted to UTC and kept within NumericDate's useful range."""
    if value.tzinfo is None:
        raise ValueError("a timestamp needs a UTC offset, e.g. 2027-01-31T00:00:00Z")
    try:
        value = value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before the first representable instant
        raise ValueError("must be between 1970-01-02 and 8999-12-31") from None
    if not EARLIEST <= value < LATEST:
        # far enough from 9999 that expiry + grace (up to 10 years) still fits in a datetime
        raise ValueError("must be between 1970-01-02 and 8999-12-31")
    return value


UTCTimestamp = Annotated[
    datetime,
    BeforeValidator(_date_means_midnight_utc),
    AfterValidator(_to_utc),
    Field(description="RFC 3339 timestamp with offset, or a date YYYY-MM-DD (00:00 UTC that day)"),
]


def _contains_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_contains_nul(k) or _contains_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_contains_nul(item) for item in value)
    if isinstance(value, Model) and value._refuse_nul:
        return False  # validated already: its own fields passed this check when it was built
    if isinstance(value, BaseModel):
        return any(_contains_nul(item) for item in value.__dict__.values())
    return False


_TIMESTAMP_ADAPTER: TypeAdapter[datetime] = TypeAdapter(UTCTimestamp)


def query_timestamp(value: str | None, field: str) -> datetime | None:
    """A timestamp from a query string, held to the same rules as in bodies (offset, range, never a number)."""
    if value is None:
        return None
    try:
        return _TIMESTAMP_ADAPTER.validate_python(value)
    except ValidationError as exc:
        message = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
        raise ValidationFailed(f"{field}: {message}", field=field) from None


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", from_attributes=True)
    # Input models refuse NUL; the problem models below describe bad input and must be able to quote its field names.
    _refuse_nul: ClassVar[bool] = True

    @field_validator("*", mode="after")
    @classmethod
    def _refuse_nul_characters(cls, value: Any) -> Any:
        """PostgreSQL text cannot hold NUL and C-based tools truncate at it: refused in every field, at any depth."""
        if cls._refuse_nul and _contains_nul(value):
            raise ValueError("must not contain NUL characters")
        return value


class Page(Model, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class FieldProblem(Model):
    _refuse_nul: ClassVar[bool] = False
    field: str
    message: str


class Problem(Model):
    """RFC 9457 problem details, with a stable machine-readable code."""

    _refuse_nul: ClassVar[bool] = False

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    code: str
    errors: list[FieldProblem] = Field(default_factory=list)
    # The same text as ``detail``, for clients that read ``message`` (Dify's enterprise client does).
    message: str = ""
    # The request's id (the X-Request-Id response header): quote it to find the request's log lines.
    request_id: str | None = Field(default=None, examples=["4bf92f3577b34da6a3ce929d0e0e4736"])


Metadata = Annotated[dict[str, Any], Field(max_length=50, description="Free-form JSON for the vendor's own use")]


PROBLEM_MEDIA_TYPE = "application/problem+json"


def problem_spec(description: str) -> ResponseSpec:
    """An error response in the OpenAPI schema: a Problem with this description."""
    return ResponseSpec(data_container=Problem, media_type=PROBLEM_MEDIA_TYPE, description=description)
