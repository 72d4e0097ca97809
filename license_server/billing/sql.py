"""INSERT ... ON CONFLICT for whichever database a connection talks to (SQLite and PostgreSQL spell it alike)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite


def upsert_insert(dialect_name: str, table: Any) -> Any:
    return postgresql.insert(table) if dialect_name == "postgresql" else sqlite.insert(table)
