"""The declarative base and the column types every domain shares."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import JSON, BigInteger, DateTime, Integer, MetaData, Numeric, String, TypeDecorator
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from license_server.clock import as_utc, utcnow

# Stable constraint names so Alembic migrations are the same on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# 64-bit autoincrement ids on PostgreSQL; SQLite autoincrements only an INTEGER PRIMARY KEY.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC, always returns timezone-aware UTC (SQLite would otherwise hand back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use timezone-aware UTC")
        return as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)

    # On SQLite this step and the dialect's DATETIME text are done in one function: the same text, formatted by
    # ``isoformat`` in C instead of a %-format of seven attributes, in one Python call instead of three. Every write
    # path binds several per statement.
    def bind_processor(self, dialect: Dialect) -> Any:
        if dialect.name != "sqlite" or not _default_sqlite_datetime(self, dialect):
            return super().bind_processor(dialect)

        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            if value.tzinfo is not UTC:
                if value.tzinfo is None:
                    raise ValueError("naive datetimes are not stored; use timezone-aware UTC")
                value = value.astimezone(UTC)
            # "YYYY-MM-DD HH:MM:SS.ffffff", the dialect's storage format, without the "+00:00" isoformat adds
            return value.isoformat(" ", "microseconds")[:26]

        return process


def _default_sqlite_datetime(column_type: UTCDateTime, dialect: Dialect) -> bool:
    """Whether SQLite's DATETIME for ``column_type`` keeps SQLAlchemy's default text format (no custom one)."""
    impl = cast(Any, column_type.impl_instance.dialect_impl(dialect))
    return (
        isinstance(impl, sqlite.DATETIME)
        and impl._storage_format == sqlite.DATETIME._storage_format
        and impl._reg is None
    )


class ExactDecimal(TypeDecorator[Decimal]):
    """A ``Decimal`` stored exactly: ``NUMERIC(precision, scale)`` on PostgreSQL; on SQLite an integer count of
    ``10**-scale`` units, because SQLite keeps NUMERIC values as binary floats (0.1 + 0.2 would not be 0.3).

    SQL arithmetic on the column (``SUM``, ``remaining - :drawn``) stays exact on both; on SQLite a 64-bit integer
    holds up to 9.2e18 units (9.2e12 at scale 6), so callers bound amounts well below that. A value with more
    decimal places than ``scale`` is refused, never rounded.
    """

    impl = Numeric
    cache_ok = True

    def __init__(self, precision: int = 24, scale: int = 6) -> None:
        super().__init__()
        self.precision, self.scale = precision, scale

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(self.precision, self.scale, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Decimal | int | None:
        if value is None:
            return None
        if not isinstance(value, Decimal):  # an int is exact too; a float never is
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"ExactDecimal takes Decimal or int, not {type(value).__name__}")
            value = Decimal(value)
        units = value.scaleb(self.scale)
        if units != units.to_integral_value():
            raise ValueError(f"more than {self.scale} decimal places")
        return int(units) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return Decimal(int(value)).scaleb(-self.scale)
        return value if isinstance(value, Decimal) else Decimal(value)


class DecimalText(TypeDecorator[Decimal]):
    """A ``Decimal`` of any size and precision, stored exactly and never summed in SQL: unconstrained ``NUMERIC`` on
    PostgreSQL, its exact decimal text on SQLite (whose NUMERIC is a binary float). For amounts computed from
    quantities and prices (a usage event's cost), where a fixed scale would have to round."""

    impl = String(80)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(80))
        return dialect.type_descriptor(Numeric(asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Decimal | str | None:
        if value is None:
            return None
        if not isinstance(value, Decimal) or not value.is_finite():
            raise TypeError("DecimalText takes a finite Decimal")
        return format(value, "f") if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return value if isinstance(value, Decimal) else Decimal(str(value))


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[dict[str, Any]]: JSON(),
        list[str]: JSON(),
    }


def new_id() -> uuid.UUID:
    return uuid.uuid4()


def ordered_id() -> uuid.UUID:
    """A UUIDv7 (RFC 9562): the Unix time in milliseconds, then 74 random bits. Rows inserted as they happen with
    these ids land at the end of their primary-key index instead of on a random page each, so a batch of inserts
    dirties a few pages, not one per row: a SQLite batch of 24 reservations commits in 310 µs instead of 530-810
    (growing with the table), and PostgreSQL writes fewer full pages to its WAL. For rows written when they happen
    (reservations, usage records); the id tells when, to the millisecond, which their own timestamps say anyway."""
    random = int.from_bytes(os.urandom(10), "big")
    milliseconds = time.time_ns() // 1_000_000
    return uuid.UUID(
        int=(milliseconds << 80) | (0x7 << 76) | (((random >> 62) & 0xFFF) << 64) | (0b10 << 62) | (random & _LOW_62)
    )


_LOW_62 = (1 << 62) - 1


class CreatedAt:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
