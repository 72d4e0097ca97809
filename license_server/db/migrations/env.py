"""Alembic environment: runs migrations over the application's async engine."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from license_server.all_models import Base
from license_server.config import Settings
from license_server.db.migrate import MIGRATION_LOCK_ID
from license_server.db.session import create_engine

settings: Settings = context.config.attributes.get("settings") or Settings()


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,  # SQLite can only alter tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Held until this transaction ends: a replica starting at the same moment waits here, then reads the
            # version this one committed and has nothing to do (PostgreSQL runs DDL in the transaction).
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        context.run_migrations()


async def _run_online() -> None:
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


asyncio.run(_run_online())
