"""``db backup`` is consistent while the server writes; ``db restore`` refuses a database in use; a restored database
issues byte-identical signed documents for the same licenses and keys (fixed clock; Ed25519 is deterministic)."""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from license_server.config import Settings
from license_server.deployments.service import license_document
from license_server.runtime import Runtime
from tests.e2e.conftest import Cli, free_port, start_server

pytestmark = pytest.mark.slow
FIXED = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)


def documents(cli: Cli, license_ids: list[str]) -> list[str]:
    settings = Settings(
        data_dir=cli.cwd / "data", keys_dir=cli.cwd / "keys", key_passphrase_file=cli.cwd / "keys" / "passphrase"
    )

    async def sign_all() -> list[str]:
        runtime = Runtime.build(settings, clock=lambda: FIXED)
        try:
            async with runtime.session_factory() as db:
                return [
                    await license_document(
                        db,
                        signer=runtime.signer,
                        issuer=settings.issuer,
                        license_id=uuid.UUID(license_id),
                        ttl=settings.document_ttl,
                        clock=lambda: FIXED,
                    )
                    for license_id in license_ids
                ]
        finally:
            await runtime.close()

    return asyncio.run(sign_all())


def claims(document: str) -> dict[str, object]:
    payload: dict[str, object] = json.loads(base64.urlsafe_b64decode(document.split(".")[1] + "=="))
    return payload


def activation_load(url: str, key: str, stop: threading.Event, acknowledged: list[str]) -> None:
    with httpx.Client(base_url=url, timeout=5) as http:
        while not stop.is_set():
            response = http.post("/v1/activations", json={"license_key": key, "fingerprint": uuid.uuid4().hex})
            if response.status_code == 201:
                acknowledged.append(response.json()["activation_id"])


def test_backup_under_load_restore_after_wipe_gives_byte_identical_documents(cli: Cli) -> None:
    cli.run("init", "--dev")
    customer = cli.json("customers", "create", "--name", "Backup Corp")["id"]
    issue = ("licenses", "issue", "--customer", customer, "--expires", "2035-01-01")
    license_ids = [cli.json(*issue, "--max-activations", str(n))["id"] for n in (1, 5, 0)]
    busy_key = cli.json(*issue, "--max-activations", "0")["key"]  # the load works on a license of its own
    server = start_server(cli, free_port())
    stop, acknowledged = threading.Event(), list[str]()
    load = threading.Thread(target=activation_load, args=(server.url, busy_key, stop, acknowledged))
    load.start()
    try:
        while len(acknowledged) < 20:
            threading.Event().wait(0.05)
        backed_up = cli.json("db", "backup", "--out", "backup.db")
        refused = cli.run("db", "restore", "backup.db", "--json", check=False)
    finally:
        stop.set()
        load.join()
        server.process.terminate()
        server.process.wait(timeout=10)
    assert backed_up["revision"]
    assert refused.returncode != 0
    assert '"database_in_use"' in refused.stdout
    backup = cli.cwd / "backup.db"
    assert backup.stat().st_mode & 0o777 == 0o600
    with sqlite3.connect(backup) as connection:  # a consistent snapshot taken mid-load
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        activations = connection.execute("SELECT count(*) FROM activations").fetchone()[0]
        events = connection.execute("SELECT count(*) FROM events WHERE type = 'activation.created'").fetchone()[0]
    assert activations == events > 0
    before = documents(cli, license_ids)

    for path in (cli.cwd / "data").glob("license-server.db*"):
        path.unlink()  # the disaster
    restored = cli.json("db", "restore", "backup.db")
    assert restored["previous_database"] is None
    after = documents(cli, license_ids)
    for old, new in zip(before, after, strict=True):
        differing = {
            k: (claims(old)[k], claims(new).get(k)) for k in claims(old) if claims(old)[k] != claims(new).get(k)
        }
        assert differing == {}
    assert after == before  # byte for byte
    print(
        f"\nbackup under load: {len(acknowledged)} activations acknowledged during it, {activations} in the snapshot; "
        f"{len(before)} documents identical after restore"
    )
    # The restored server serves, and knows the keys issued before the backup.
    server = start_server(cli, free_port())
    try:
        status = httpx.post(f"{server.url}/v1/activations", json={"license_key": busy_key, "fingerprint": "after"})
        assert status.status_code == 201, status.text
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)


def test_restore_refuses_a_file_that_is_not_an_intact_database_of_ours(cli: Cli, tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database" * 100)
    result = cli.run("db", "restore", str(junk), "--json", check=False)
    assert result.returncode != 0
    assert "validation_error" in result.stdout
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE t (x)")
    result = cli.run("db", "restore", str(other), "--json", check=False)
    assert result.returncode != 0
    assert "not a License Server database" in result.stdout


def test_backup_and_restore_on_postgres_explain_pg_dump(cli: Cli) -> None:
    cli.env = {**cli.env, "LICENSE_SERVER_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:1/none"}
    for args in (("db", "backup", "--out", "x.db"), ("db", "restore", __file__)):
        result = cli.run(*args, check=False)
        assert result.returncode == 2
        assert "pg_dump" in result.stderr
        assert "pg_restore" in result.stderr
