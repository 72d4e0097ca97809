"""Backup and restore report their progress in pages to a watcher, and copy the same database stepwise."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from license_server.config import Settings
from license_server.db import backup as backups
from license_server.db.backup import backup, database_path, restore


@pytest.mark.parametrize("backend", ["sqlite"])  # backups are of the SQLite file; PostgreSQL has pg_dump
def test_a_watched_backup_and_restore_report_every_step_up_to_all_pages(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backups, "PROGRESS_PAGES", 2)  # the migrated template is a few dozen pages: many steps
    with sqlite3.connect(database_path(settings)) as db:
        pages = db.execute("PRAGMA page_count").fetchone()[0]
    seen: list[tuple[int, int]] = []

    info = backup(settings, tmp_path / "copy.db", lambda done, total: seen.append((done, total)))

    assert len(seen) >= pages // 2
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert seen[-1] == (pages, pages)
    assert info.revision  # the copy passed the integrity and schema check backup() makes

    restored: list[tuple[int, int]] = []
    restore(settings, info.path, lambda done, total: restored.append((done, total)))
    assert restored[-1] == (pages, pages)
    assert len(restored) >= pages // 2
