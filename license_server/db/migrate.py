"""Alembic is the only way the schema is created. Called synchronously, before any event loop runs."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from license_server.config import Settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["settings"] = settings
    return config


def upgrade_database(settings: Settings, revision: str = "head") -> None:
    if settings.is_sqlite:
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    command.upgrade(alembic_config(settings), revision)
