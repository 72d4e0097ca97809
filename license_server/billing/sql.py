"""INSERT ... ON CONFLICT for whichever database a connection talks to (SQLite and PostgreSQL spell it alike), and
prepared statements run straight on SQLite's driver (``Prepared``)."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Dialect
from sqlalchemy.dialects import postgresql, sqlite


def upsert_insert(dialect_name: str, table: Any) -> Any:
    return postgresql.insert(table) if dialect_name == "postgresql" else sqlite.insert(table)


class Prepared:
    """A Core statement that runs straight on SQLite's driver connection when a connection is SQLite's: compiled once,
    its parameters and results converted by the column types' own processors (what SQLAlchemy does per call), but
    without SQLAlchemy's execution context per call, which costs several times what SQLite itself does for these
    one-row statements. On PostgreSQL (or with ``statement`` per dialect, the right one) it is executed as usual.

    ``column_keys`` names the parameters of an INSERT or UPDATE's values, as ``Connection.execute`` would get them.
    Rows come back as named tuples (attribute access, as SQLAlchemy rows)."""

    def __init__(self, statement: Any, *, column_keys: Sequence[str] | None = None) -> None:
        self._statements: dict[str, Any] = statement if isinstance(statement, dict) else {}
        self._statement = None if isinstance(statement, dict) else statement
        self._column_keys = list(column_keys) if column_keys is not None else None
        self._compiled: tuple[str, list[tuple[str, Any]], Any, list[Any]] | None = None

    def statement(self, dialect_name: str) -> Any:
        return self._statements[dialect_name] if self._statements else self._statement

    def _compile(self, dialect: Dialect) -> tuple[str, list[tuple[str, Any]], Any, list[Any]]:
        compiled = self.statement("sqlite").compile(dialect=dialect, column_keys=self._column_keys)
        processors = compiled._bind_processors
        names = compiled.positiontup or []
        binds = [(name, processors.get(name)) for name in names]
        columns = compiled._result_columns
        row = namedtuple("row", [entry[0] for entry in columns], rename=True) if columns else None
        results = [entry[3]._cached_result_processor(dialect, None) for entry in columns]
        self._compiled = (compiled.string, binds, row, results)
        return self._compiled

    def rows(self, connection: Connection, params: dict[str, Any]) -> list[Any]:
        if connection.dialect.name != "sqlite":
            return list(connection.execute(self.statement(connection.dialect.name), params).all())
        sql, binds, row, results = self._compiled or self._compile(connection.dialect)
        values = [params[name] if process is None else process(params[name]) for name, process in binds]
        driver = connection.connection.driver_connection
        assert driver is not None
        fetched = driver.execute(sql, values).fetchall()
        if row is None:
            return []
        return [
            row._make(
                [value if process is None else process(value) for value, process in zip(raw, results, strict=True)]
            )
            for raw in fetched
        ]

    def run(self, connection: Connection, params: dict[str, Any]) -> None:
        """Execute (an INSERT, UPDATE or DELETE without RETURNING)."""
        if connection.dialect.name != "sqlite":
            connection.execute(self.statement(connection.dialect.name), params)
            return
        sql, binds, _, _ = self._compiled or self._compile(connection.dialect)
        values = [params[name] if process is None else process(params[name]) for name, process in binds]
        driver = connection.connection.driver_connection
        assert driver is not None
        driver.execute(sql, values)

    def run_many(self, connection: Connection, rows: Sequence[dict[str, Any]]) -> int:
        """Execute once per parameter dict (an INSERT or UPDATE without RETURNING): one ``executemany`` on SQLite.
        Returns how many rows the executions changed in all."""
        if connection.dialect.name != "sqlite":
            return int(connection.execute(self.statement(connection.dialect.name), list(rows)).rowcount)
        sql, binds, _, _ = self._compiled or self._compile(connection.dialect)
        driver = connection.connection.driver_connection
        assert driver is not None
        cursor = driver.executemany(
            sql,
            [
                [params[name] if process is None else process(params[name]) for name, process in binds]
                for params in rows
            ],
        )
        return int(cursor.rowcount)
