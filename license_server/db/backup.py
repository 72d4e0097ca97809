"""Backup and restore of the embedded SQLite database.

Backups use SQLite's online backup API: a consistent snapshot of committed transactions, taken while servers keep
writing. Restores refuse to run while a server or scheduler uses the database (they hold a shared lock on
``data/license-server.lock`` for their lifetime), check the backup first, and keep the replaced database beside it.
PostgreSQL deployments back up with pg_dump and restore with pg_restore (``POSTGRES_ADVICE``).

The keys directory is not in the database: back it up separately (its private files are encrypted at rest). A
database restored without its own keys cannot match license keys or tokens, whose hashes are keyed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from alembic.script import ScriptDirectory

from license_server.config import DATABASE_FILE_NAME, Settings
from license_server.errors import Conflict, ValidationFailed

LOCK_FILE_NAME = "license-server.lock"
POSTGRES_ADVICE = """\
This server uses PostgreSQL; back it up and restore it with PostgreSQL's own tools, which are consistent while
servers run:

  pg_dump --format=custom --file license-server.dump "$DATABASE_URL"
  pg_restore --clean --if-exists --no-owner --dbname "$DATABASE_URL" license-server.dump

(use the URL without the +asyncpg driver suffix). Stop every license-server process before pg_restore, and back up
the keys directory alongside: license keys and tokens are hashed with a key kept there."""


class DatabaseInUse(Conflict):
    code = "database_in_use"
    title = "The database is in use"


class NotSQLite(ValidationFailed):
    code = "not_sqlite"
    title = "Backup and restore here are for the embedded SQLite database"


@dataclass(frozen=True)
class BackupInfo:
    path: Path
    revision: str
    bytes: int


def database_path(settings: Settings) -> Path:
    if not settings.is_sqlite:
        raise NotSQLite(POSTGRES_ADVICE)
    return settings.data_dir / DATABASE_FILE_NAME


@contextlib.contextmanager
def server_lock(settings: Settings) -> Iterator[None]:
    """Held (shared) by serve and scheduler for their lifetime; restore needs it exclusively."""
    if not settings.is_sqlite:
        yield
        return
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(settings.data_dir / LOCK_FILE_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def _check_backup(path: Path) -> str:
    """The backup's schema revision, after checking it is an intact database of ours that this version can run."""
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ValidationFailed(f"cannot open {path.name}: {exc}", field="file") from exc
    try:
        if connection.execute("PRAGMA integrity_check").fetchone() != ("ok",):
            raise ValidationFailed(f"{path.name} fails SQLite's integrity check", field="file")
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError as exc:
        raise ValidationFailed(f"{path.name} is not a License Server database: {exc}", field="file") from exc
    finally:
        connection.close()
    if row is None:
        raise ValidationFailed(f"{path.name} has no schema revision", field="file")
    revision = str(row[0])
    from license_server.db.migrate import MIGRATIONS_DIR

    if revision not in {script.revision for script in ScriptDirectory(str(MIGRATIONS_DIR)).walk_revisions()}:
        raise ValidationFailed(f"{path.name} is at revision {revision}, unknown to this version", field="file")
    return revision


# Pages copied per step when someone watches the progress: ~4 MiB at SQLite's default page size, so a bar moves
# on a large database while the step count stays small. Without a watcher it is one step, as before.
PROGRESS_PAGES = 1024
Progress = Callable[[int, int], None]  # (pages copied, pages in all)


def _backup_api(src: sqlite3.Connection, dst: sqlite3.Connection, progress: Progress | None) -> None:
    if progress is None:
        src.backup(dst)
        return
    src.backup(dst, pages=PROGRESS_PAGES, progress=lambda _status, remaining, total: progress(total - remaining, total))


def _copy(source: Path, target: Path, progress: Progress | None = None) -> None:
    """Online backup of ``source`` into a new 0600 file ``target`` (never overwritten)."""
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        with contextlib.closing(sqlite3.connect(source)) as src, contextlib.closing(sqlite3.connect(tmp)) as dst:
            _backup_api(src, dst, progress)
        os.link(tmp, target)  # fails if target exists
    finally:
        tmp.unlink(missing_ok=True)


def backup(settings: Settings, out: Path, progress: Progress | None = None) -> BackupInfo:
    source = database_path(settings)
    if not source.exists():
        raise ValidationFailed(f"no database at {source}; run `license-server init`", field="database")
    if out.exists():
        raise ValidationFailed(f"{out} exists; backups never overwrite", field="out")
    _copy(source, out, progress)
    return BackupInfo(out, _check_backup(out), out.stat().st_size)


def restore(settings: Settings, backup_file: Path, progress: Progress | None = None) -> tuple[BackupInfo, Path | None]:
    """Replace the database with ``backup_file``. Returns the backup's info and where the old database was kept."""
    target = database_path(settings)
    revision = _check_backup(backup_file)
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(settings.data_dir / LOCK_FILE_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise DatabaseInUse(
                "a license-server serve or scheduler process is using this database; stop every one, then restore"
            ) from exc
        kept: Path | None = None
        if target.exists():
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            kept = target.with_name(f"{target.name}.before-restore-{stamp}")
            _copy(target, kept)
        # Through SQLite's backup API into the live file: its WAL and shared memory stay consistent.
        with (
            contextlib.closing(sqlite3.connect(backup_file)) as src,
            contextlib.closing(sqlite3.connect(target, timeout=0)) as dst,
        ):
            try:
                # stepwise is still one restore: the destination stays locked from the first step to the last
                _backup_api(src, dst, progress)
            except sqlite3.OperationalError as exc:  # another process holds a write lock after all
                raise DatabaseInUse(f"the database is locked by another process: {exc}") from exc
        os.chmod(target, 0o600)
    finally:
        os.close(fd)
    return BackupInfo(backup_file, revision, backup_file.stat().st_size), kept
