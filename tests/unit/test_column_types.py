"""The shared column types: what SQLite stores for a datetime is exactly SQLAlchemy's own text for it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import DateTime, TypeDecorator
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect

from license_server.clock import as_utc
from license_server.db.base import UTCDateTime


class _TwoSteps(TypeDecorator[datetime]):
    """UTCDateTime as SQLAlchemy composes it: this type's step, then the dialect's DATETIME text."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive")
        return as_utc(value)


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 12, 1, 17, 0, tzinfo=UTC),  # no microseconds: still six digits
        datetime(2026, 12, 1, 17, 0, 0, 1, tzinfo=UTC),
        datetime(1, 1, 2, 3, 4, 5, 999999, tzinfo=UTC),
        datetime(999, 1, 1, tzinfo=UTC),  # a zero-padded year
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 3, 1, 0, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),  # stored as its UTC time
        None,
    ],
)
def test_sqlite_datetime_text_is_the_dialects_own(moment: datetime | None) -> None:
    dialect = sqlite.dialect()
    one_step, two_steps = UTCDateTime().bind_processor(dialect), _TwoSteps()._cached_bind_processor(dialect)
    assert one_step is not None
    assert two_steps is not None
    assert one_step(moment) == two_steps(moment)


def test_naive_datetimes_are_refused_on_sqlite() -> None:
    process = UTCDateTime().bind_processor(sqlite.dialect())
    with pytest.raises(ValueError, match="naive"):
        process(datetime(2026, 1, 1))
