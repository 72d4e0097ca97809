"""Alembic environment of the edge's own edge.db: run on the connection ``edge.store.prepare`` hands in."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

import license_server.edge.inner_models  # noqa: F401 - its tables are the edge's too
from license_server.edge.store import EDGE_VERSION_TABLE, EdgeBase

connection: Connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=EdgeBase.metadata,
    version_table=EDGE_VERSION_TABLE,
    render_as_batch=True,  # SQLite can only alter tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
