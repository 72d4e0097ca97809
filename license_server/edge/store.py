"""The edge's local state: its own small SQLite file (``DATA_DIR/edge.db``), not the vendor's schema.

Tables are declared on ``EdgeBase`` (a feature mounted on the edge, such as the inner API's workspace overrides and
app access modes, declares its models on it too) and created and changed by the edge's own Alembic migrations
(``edge/migrations``, version table ``edge_alembic_version``), which ``prepare`` runs on start: an upgraded edge
migrates its edge.db in place. A file made by a release before the migrations (``create_all``) is recognised by its
tables and stamped at the first revision, which is that schema, then upgraded.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Connection, Float, Integer, MetaData, String, event, inspect
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import ConnectionPoolEntry

from license_server.db.base import NAMING_CONVENTION, UTCDateTime
from license_server.db.session import restrict_sqlite_files

DB_FILE = "edge.db"
EDGE_VERSION_TABLE = "edge_alembic_version"
EDGE_MIGRATIONS = Path(__file__).parent / "migrations"
BASELINE = "0001_edge_initial"  # the schema create_all made before the edge had migrations


class EdgeBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[dict[str, Any]]: JSON()}


class EdgeBinding(EdgeBase):
    """The binding of the license file the edge serves (one row), so install-side commands need no file."""

    __tablename__ = "edge_binding"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    license_id: Mapped[str] = mapped_column(String(64))
    activation_id: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str] = mapped_column(String(256))
    install_key: Mapped[str] = mapped_column(String(64))
    claims: Mapped[dict[str, Any]]
    loaded_at: Mapped[datetime]


class EdgeTrustedTime(EdgeBase):
    __tablename__ = "edge_trusted_time"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    newest_iat: Mapped[float] = mapped_column(Float)
    newest_local: Mapped[float] = mapped_column(Float)


class EdgeUsage(EdgeBase):
    """One usage report the local product posted to ``/v1/usage``."""

    __tablename__ = "edge_usage"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    measured_at: Mapped[datetime]
    received_at: Mapped[datetime]
    seats_used: Mapped[int] = mapped_column(Integer)
    workspace_count: Mapped[int] = mapped_column(Integer)
    max_members: Mapped[int] = mapped_column(Integer)
    workspaces: Mapped[list[dict[str, Any]]]


# The current report is the latest measured (on a tie, the last received), not the last received: a retried or
# delayed post of an older measurement must not replace a newer one.
CURRENT_FIRST = (EdgeUsage.measured_at.desc(), EdgeUsage.id.desc())


class EdgeUsageReport(EdgeBase):
    """One exported link of the usage chain, kept verbatim so a lost file can be written again."""

    __tablename__ = "edge_usage_reports"

    activation_id: Mapped[str] = mapped_column(String(64), primary_key=True)  # a new binding starts a new chain
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    hash: Mapped[str] = mapped_column(String(64))
    through_usage_id: Mapped[int] = mapped_column(Integer)
    measurements: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    text: Mapped[str] = mapped_column(String)


def _sqlite_pragmas(connection: DBAPIConnection, _: ConnectionPoolEntry) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_edge_engine(data_dir: Path) -> AsyncEngine:
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    restrict_sqlite_files(data_dir / DB_FILE)
    engine = create_async_engine(f"sqlite+aiosqlite:///{data_dir / DB_FILE}")
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def edge_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def prepare(engine: AsyncEngine) -> None:
    """Bring edge.db to the newest schema (idempotent; one process at a time, as the edge runs)."""
    async with engine.begin() as connection:
        await connection.run_sync(_migrate)


def _migrate(connection: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(EDGE_MIGRATIONS))
    config.attributes["connection"] = connection
    tables = set(inspect(connection).get_table_names())
    if EDGE_VERSION_TABLE not in tables and EdgeBinding.__tablename__ in tables:
        command.stamp(config, BASELINE)  # made by create_all: the baseline is what it holds
    command.upgrade(config, "head")
