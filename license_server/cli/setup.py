"""``init``, ``serve`` and ``db``: getting a server running."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import click
from sqlalchemy import func, select

from license_server.auth.models import AdminToken
from license_server.auth.tokens import Role, cli_actor, create_token
from license_server.cli.common import (
    emit,
    fail,
    json_option,
    listening_socket,
    progress_on_stderr,
    serve_on,
    settings,
)
from license_server.config import Settings
from license_server.errors import KeyringError, LicenseServerError
from license_server.runtime import Runtime, key_store
from license_server.signing.keys import create_dev_keys, create_dev_passphrase_file


async def _create_owner_token_if_first(settings_: Settings) -> str | None:
    runtime = Runtime.build(settings_)
    try:
        async with runtime.session_factory() as session:
            if await session.scalar(select(func.count()).select_from(AdminToken)):
                return None
            created = await create_token(
                session, hasher=runtime.hasher, actor=cli_actor(), name="owner", role=Role.OWNER
            )
            return created.secret
    finally:
        await runtime.close()


@click.command()
@click.option(
    "--dev",
    is_flag=True,
    help="Development: create a random key passphrase in a 0600 file if none is configured, and a local root key "
    "(in keys/root/, standing in for the key host) that certifies the server's first issuing key.",
)
@json_option
def init(dev: bool, as_json: bool) -> None:
    """Create the data directory, keys and database if missing; print the owner token on first init."""
    config = settings()
    config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    notes: list[str] = []
    if dev and config.key_passphrase is None and create_dev_passphrase_file(config.passphrase_path):
        notes.append(
            f"Development key passphrase written to {config.passphrase_path} (mode 0600). "
            "In production set LICENSE_SERVER_KEY_PASSPHRASE or LICENSE_SERVER_KEY_PASSPHRASE_FILE."
        )
    try:
        notes.extend(_prepare_keys(config, dev=dev))
    except LicenseServerError as exc:
        fail(exc.detail, exc.code, as_json=as_json)
    from license_server.db.migrate import upgrade_database

    upgrade_database(config)
    try:
        token = asyncio.run(_create_owner_token_if_first(config))
    except KeyringError as exc:
        fail(exc.detail, exc.code, as_json=as_json)
    if as_json:
        emit({"admin_token": token}, as_json=True)
        return
    for note in notes:
        click.echo(note)
    if token:
        click.echo(f"Owner admin token (shown once, store it now):\n  {token}")
    else:
        click.echo("Already initialised: keys and data were left as they are.")


def _prepare_keys(config: Settings, *, dev: bool) -> list[str]:
    """The server's keyring: made with a local development root (``--dev``), else imported from the key host."""
    from license_server.cli.keys import root_store

    store = key_store(config)
    if not dev:
        if not store.is_initialised:
            raise KeyringError(
                "no signing keys: on the key host run `license-server keys root init` and `license-server keys "
                "rotate --out bundle.json`, then here `license-server keys import bundle.json` (docs/keys.md); "
                "or `init --dev` for development"
            )
        return []
    root = root_store(config, None)
    if store.holds_legacy_root_key and root.adopt_legacy_root(config.keys_dir):
        return [f"Moved the root private key out of the server's keys to {root.root_dir}/ (the key host's place)."]
    if create_dev_keys(store, root, passphrase=store.passphrase):
        return [
            f"Generated a development root key in {root.root_dir}/ (the server never reads it) and an issuing key "
            f"certified by it in {config.keys_dir}/ (root public key: {config.keys_dir / 'root.pub'})."
        ]
    return []


@click.command()
@click.option("--host", default=None, help="Interface to bind (default 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port (default 8000).")
@click.option("--no-scheduler", is_flag=True, help="Leave the sweep and webhooks to `license-server scheduler`.")
def serve(host: str | None, port: int | None, no_scheduler: bool) -> None:
    """Apply migrations and serve the API."""
    from license_server.app import create_app

    config = settings()
    _configure_logging(config)
    host, port = host or config.host, port or config.port
    sock = listening_socket(host, port)  # before keys, migrations and jobs: a busy port fails at once
    try:
        app = create_app(Runtime.build(config), run_jobs=True, run_shared_jobs=not no_scheduler)
    except KeyringError as exc:
        fail(exc.detail, exc.code)
    from license_server.db.migrate import upgrade_database

    upgrade_database(config)
    click.echo(
        f"License Server on http://{host}:{port}  (API docs: http://{host}:{port}/schema, "
        f"OpenAPI: http://{host}:{port}/schema/openapi.json)"
        + (f"; metrics on http://{config.metrics_host}:{config.metrics_port}/" if config.metrics_port else "")
    )
    from license_server.db.backup import server_lock

    with server_lock(config):  # `db restore` waits for no running server
        serve_on(sock, app, log_level=config.log_level.lower())


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@json_option
def db_upgrade(as_json: bool) -> None:
    """Apply all migrations."""
    from license_server.db.migrate import upgrade_database

    upgrade_database(settings())
    emit({"upgraded": True}, as_json=as_json, human="database is at the latest schema")


@db.command("backup")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="New file.")
@json_option
def db_backup(out: Path, as_json: bool) -> None:
    """Copy the SQLite database to a new file, consistently, even while servers run (0600, never overwrites)."""
    from license_server.db.backup import backup

    try:
        with progress_on_stderr("backing up") as progress:
            info = backup(settings(), out, progress)
    except LicenseServerError as exc:
        fail(exc.detail, exc.code, as_json=as_json, exit_code=2 if exc.code == "not_sqlite" else 1)
    emit(
        {"backup": str(info.path), "revision": info.revision, "bytes": info.bytes},
        as_json=as_json,
        human=f"backed up to {info.path} ({info.bytes} bytes, schema revision {info.revision})",
    )


@db.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
def db_restore(file: Path, as_json: bool) -> None:
    """Replace the SQLite database with a backup. Refused while any serve or scheduler process uses it; the
    replaced database is kept beside it. Restore the keys directory that belongs to the backup too."""
    from license_server.db.backup import restore

    try:
        with progress_on_stderr("restoring") as progress:
            info, kept = restore(settings(), file, progress)
    except LicenseServerError as exc:
        fail(exc.detail, exc.code, as_json=as_json, exit_code=2 if exc.code == "not_sqlite" else 1)
    emit(
        {"restored": str(info.path), "revision": info.revision, "previous_database": str(kept) if kept else None},
        as_json=as_json,
        human=f"restored {info.path} (schema revision {info.revision})"
        + (f"; the previous database is kept at {kept}" if kept else ""),
    )


def _configure_logging(config: Settings) -> None:
    from license_server.logs import configure_logging

    configure_logging(config.log_level, config.log_format)


@click.command()
def scheduler() -> None:
    """Run the lifecycle sweep and webhook deliveries without the HTTP server."""
    config = settings()
    _configure_logging(config)
    from license_server.db.migrate import upgrade_database
    from license_server.scheduler import build_scheduler

    try:
        runtime = Runtime.build(config)
    except KeyringError as exc:
        fail(exc.detail, exc.code)
    upgrade_database(config)

    async def main() -> None:
        jobs = build_scheduler(runtime, shared=True, per_process=False)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):  # a container's stop is SIGTERM: release leases then too
            loop.add_signal_handler(signum, stopping.set)
        jobs.start()
        if config.metrics_port is not None:
            from license_server.metrics import serve_metrics_port

            serve_metrics_port(config.metrics_host, config.metrics_port)
        click.echo("scheduler running: lifecycle sweep and webhook deliveries (Ctrl+C to stop)")
        try:
            await stopping.wait()
        finally:
            try:
                await jobs.stop()
            finally:
                await runtime.close()

    from license_server.db.backup import server_lock

    with server_lock(config):
        asyncio.run(main())


@click.group()
def config() -> None:
    """The settings in force (LICENSE_SERVER_* environment variables)."""


@config.command("show")
@json_option
def config_show(as_json: bool) -> None:
    """Print the effective settings, secrets masked. An unknown LICENSE_SERVER_* variable is refused here too."""
    from license_server.config import effective_settings

    shown = effective_settings(settings())
    if as_json:
        emit(shown, as_json=True)
        return
    width = max(map(len, shown))
    for name, value in shown.items():
        click.echo(f"{name.ljust(width)}  {'(unset)' if value is None else value}")
