"""The client library against a real server on 127.0.0.1: activation, polling, the cache, offline grace, clocks.

The host application must never see an exception, so no test here expects one.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select

from license_server.app import create_app
from license_server.auth.tokens import Actor, Role
from license_server.client import LicenseClient
from license_server.client.client import DOCUMENT_FILE, STATE_FILE
from license_server.config import Settings
from license_server.deployments import service as deployments
from license_server.deployments.models import Activation
from license_server.licenses import service
from license_server.licenses.terms import LicenseTerms
from license_server.runtime import Runtime
from license_server.signing.keys import KeyStore
from license_server.signing.service import Signer, import_revocation_list
from tests.conftest import PASSPHRASE, MovableClock, make_settings
from tests.crypto.conftest import make_claims
from tests.keyring import make_keys, root_of, rotate

TERMS = {
    "workspaces": {"enabled": True, "limit": 5},
    "members_per_workspace": {"enabled": True, "limit": 0},
    "sso": {"enforced_for_signin": True, "signin_protocol": "oidc"},
    "entitlements": {"audit_log": True, "max_apps": 40},
}


@dataclass
class LiveServer:
    url: str
    license_key: str
    root: Ed25519PublicKey
    stop: Callable[[], None]
    settings: Settings


@pytest.fixture
def live_server(tmp_path: Path, sqlite_template: Path, shared_keys_dir: Path) -> Iterator[LiveServer]:
    """``license-server serve``'s app under uvicorn in a thread, on a free port, with one issued license."""
    data = tmp_path / "server-data"
    data.mkdir()
    shutil.copy(sqlite_template, data / "license-server.db")
    keys = tmp_path / "server-keys"  # a copy (with its key host in keys/root): tests may retire its keys
    shutil.copytree(shared_keys_dir, keys)
    settings = make_settings(data, keys, None, document_ttl_seconds=3600)

    async def seed() -> str:
        runtime = Runtime.build(settings)
        actor = Actor(name="test", role=Role.OWNER)
        try:
            async with runtime.session_factory() as db:
                customer = await service.create_customer(db, actor=actor, name="Acme Corp")
                issued = await service.issue_license(
                    db,
                    actor=actor,
                    hasher=runtime.hasher,
                    customer_id=customer.id,
                    expires_at=datetime.now(UTC) + timedelta(days=365),
                    terms=LicenseTerms.model_validate(TERMS),
                )
                return issued.key
        finally:
            await runtime.close()

    key = asyncio.run(seed())
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings=settings), host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]

    def stop() -> None:
        server.should_exit = True
        thread.join(10)

    try:
        root = KeyStore(keys, PASSPHRASE).load().root_public_key
        yield LiveServer(f"http://127.0.0.1:{port}", key, root, stop, settings)
    finally:
        stop()


@pytest.fixture
def client_clock() -> MovableClock:
    return MovableClock(datetime.now(UTC))


@pytest.fixture
def make_client(live_server: LiveServer, tmp_path: Path, client_clock: MovableClock) -> Callable[..., LicenseClient]:
    def make(**overrides: Any) -> LicenseClient:
        arguments: dict[str, Any] = {
            "license_key": live_server.license_key,
            "root_public_key": live_server.root,
            "cache_dir": tmp_path / "client-cache",
            "fingerprint": "host-1",
            "clock": client_clock,
            "timeout": 2.0,
            **overrides,
        }
        return LicenseClient(arguments.pop("server_url", live_server.url), **arguments)

    return make


def test_client_activates_polls_and_answers_what_it_may_do(
    make_client: Callable[..., LicenseClient], tmp_path: Path
) -> None:
    client = make_client()
    assert client.refresh() is True
    state = client.license()
    assert (state.status, state.reason) == ("active", "ACTIVE")
    assert state.usable
    assert client.workspaces.is_available(5)
    assert not client.workspaces.is_available(6)
    assert client.members_per_workspace.is_available(10_000, used=9_999)  # limit 0 = unlimited
    assert client.licensed_seats.is_available(10**6)  # not enabled = unlimited
    assert state.sso["signin_protocol"] == "oidc"
    assert state.login["email_password"] is True
    assert state.workspace_policy["allow_member_invite"] is True
    assert state.plugin_installation["scope"] == "all"
    assert state.branding["application_title"] == ""
    assert (state.entitlement("audit_log"), state.entitlement("max_apps"), state.entitlement("nope", 0)) == (
        True,
        40,
        0,
    )
    assert client.refresh() is True  # a 304 poll
    cache = tmp_path / "client-cache"
    assert stat.S_IMODE((cache / STATE_FILE).stat().st_mode) == 0o600  # it holds the deployment token
    assert (cache / DOCUMENT_FILE).read_text().count(".") == 2


def test_usage_reported_by_the_client_comes_back_in_the_next_document(
    make_client: Callable[..., LicenseClient],
) -> None:
    client = make_client()
    client.refresh()
    assert client.report_usage(workspaces={"ws-1": 3, "ws-2": 8, "ws-3": 1}, seats_used=11)
    client.refresh()
    assert client.workspaces.used == 3
    assert client.workspaces.is_available(2)
    assert not client.workspaces.is_available(3)


def test_without_the_server_the_cache_stands_until_its_ttl_plus_grace_then_lost(
    make_client: Callable[..., LicenseClient], live_server: LiveServer, client_clock: MovableClock
) -> None:
    make_client().refresh()
    live_server.stop()
    restarted = make_client(offline_grace=timedelta(days=2))
    assert restarted.refresh() is False
    assert restarted.license().status == "active"
    exp = datetime.fromtimestamp(restarted.license().claims["exp"], UTC)
    client_clock.now = exp + timedelta(days=2) - timedelta(seconds=1)
    assert restarted.license().status == "active"
    client_clock.now = exp + timedelta(days=2)
    state = restarted.license()
    assert (state.status, state.reason) == ("lost", "SERVER_UNREACHABLE")
    assert not state.usable
    assert not restarted.workspaces.is_available(1)


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text[: len(text) // 2],  # truncated
        lambda text: text.replace(text[40], "A" if text[40] != "A" else "B", 1),  # corrupted
        lambda _: "\x00\xff garbage",
        lambda _: "",
    ],
    ids=["truncated", "corrupted", "garbage", "empty"],
)
def test_a_damaged_cache_is_never_used_the_client_falls_back_to_the_server(
    make_client: Callable[..., LicenseClient], tmp_path: Path, damage: Callable[[str], str]
) -> None:
    make_client().refresh()
    document = tmp_path / "client-cache" / DOCUMENT_FILE
    document.write_text(damage(document.read_text()), errors="surrogateescape")
    (tmp_path / "client-cache" / STATE_FILE).write_text("{not json")
    client = make_client()
    assert client.license().status == "none"  # nothing usable yet, and nothing raised
    assert client.refresh() is True
    assert client.license().status == "active"


def test_a_damaged_cache_while_the_server_is_down_is_lost_never_an_exception(
    make_client: Callable[..., LicenseClient], live_server: LiveServer, tmp_path: Path
) -> None:
    make_client().refresh()
    document = tmp_path / "client-cache" / DOCUMENT_FILE
    document.write_text(document.read_text()[:-10])
    live_server.stop()
    client = make_client()
    assert client.refresh() is False
    state = client.license()
    assert (state.status, state.reason) == ("lost", "SERVER_UNREACHABLE")


def test_a_cached_document_signed_under_another_root_is_never_used(
    make_client: Callable[..., LicenseClient], live_server: LiveServer, tmp_path: Path
) -> None:
    foreign = make_keys(tmp_path / "foreign-keys", b"another-passphrase")
    claims = make_claims(datetime.now(UTC), status_reason="ACTIVE")
    (tmp_path / "client-cache").mkdir()
    (tmp_path / "client-cache" / DOCUMENT_FILE).write_text(Signer(foreign).sign(claims))
    live_server.stop()
    client = make_client()
    assert client.license().reason == "NO_LICENSE"
    client.refresh()
    assert client.license().reason == "SERVER_UNREACHABLE"


def test_a_clock_set_back_is_lost_clock_rollback_and_remembered_across_restarts(
    make_client: Callable[..., LicenseClient], client_clock: MovableClock
) -> None:
    client = make_client()
    client.refresh()
    client_clock.advance(timedelta(hours=5))
    assert client.license().status == "active"
    client.stop()  # saves the trusted time
    client_clock.advance(timedelta(hours=-3))
    assert (client.license().status, client.license().reason) == ("lost", "CLOCK_ROLLBACK")
    restarted = make_client()
    assert restarted.license().reason == "CLOCK_ROLLBACK"
    client_clock.advance(timedelta(hours=3))
    assert restarted.license().reason == "ACTIVE"


def test_a_refused_activation_reads_none_with_the_servers_code(make_client: Callable[..., LicenseClient]) -> None:
    client = make_client(license_key="LSK-NOT-A-REAL-KEY")
    assert client.refresh() is True  # the server answered, with a refusal
    state = client.license()
    assert (state.status, state.reason) == ("none", "NO_LICENSE")
    assert state.detail is not None
    assert "license_key_not_found" in state.detail


def test_the_background_thread_polls_and_outlives_the_server(
    make_client: Callable[..., LicenseClient], live_server: LiveServer
) -> None:
    client = make_client(poll_interval=0.1)
    client.start()
    try:
        deadline = time.monotonic() + 10
        while client.license().status != "active":
            assert time.monotonic() < deadline, "the background thread never activated"
            time.sleep(0.02)
        live_server.stop()
        time.sleep(0.5)  # several failed polls
        assert client._thread is not None
        assert client._thread.is_alive()
        assert client.license().status == "active"  # still within the document's TTL
    finally:
        client.stop()
    assert not client._thread.is_alive()


HEAVY = ("litestar", "sqlalchemy", "pydantic", "alembic", "uvicorn", "asyncpg", "aiosqlite", "httpx", "jwt")


def test_importing_the_client_in_a_fresh_interpreter_loads_no_web_database_or_http_stack() -> None:
    probe = (
        "import json, sys\nimport license_server.client\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    completed = subprocess.run(
        [sys.executable, "-I", "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    loaded = set(json.loads(completed.stdout))
    assert {"license_server", "cryptography"} <= loaded
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_an_unusable_root_key_is_logged_not_raised_and_no_document_is_trusted(
    make_client: Callable[..., LicenseClient], tmp_path: Path
) -> None:
    client = make_client(root_public_key=tmp_path / "missing-root.pub")
    client.refresh()
    state = client.license()
    assert (state.status, state.usable) == ("none", False)
    assert state.detail is not None
    assert "refused" in state.detail


def test_a_deactivated_client_activates_again_on_its_next_poll(
    make_client: Callable[..., LicenseClient], live_server: LiveServer
) -> None:
    client = make_client()
    client.refresh()

    async def deactivate_all() -> list[bool]:
        runtime = Runtime.build(live_server.settings)
        try:
            async with runtime.session_factory() as db:
                live = list(await db.scalars(select(Activation)))
                for activation in live:
                    await deployments.deactivate(db, runtime=runtime, activation_id=activation.id, by="test")
                return [a.deactivated_at is None for a in await db.scalars(select(Activation))]
        finally:
            await runtime.close()

    assert asyncio.run(deactivate_all()) == [False]
    assert client.refresh() is True  # 401, then a new activation with a new token
    assert client.license().status == "active"

    async def live_count() -> int:
        runtime = Runtime.build(live_server.settings)
        try:
            async with runtime.session_factory() as db:
                return len([a for a in await db.scalars(select(Activation)) if a.deactivated_at is None])
        finally:
            await runtime.close()

    assert asyncio.run(live_count()) == 1


# -- retired keys ---------------------------------------------------------------------------------------------------
def _rotate_and_retire_on_the_server(live_server: LiveServer) -> tuple[str, str, str]:
    """The key host rotates and retires the first key; the server imports both. (old kid, new kid, the list)."""
    store = KeyStore(live_server.settings.keys_dir, PASSPHRASE)
    old = store.load().signer_kid
    new = rotate(store)
    token = root_of(store).retire(old)

    async def import_list() -> None:
        runtime = Runtime.build(live_server.settings)
        try:
            async with runtime.session_factory() as session:
                await import_revocation_list(
                    session, actor=Actor("test", Role.OWNER), signer=runtime.signer, token=token
                )
        finally:
            await runtime.close()

    asyncio.run(import_list())
    return old, new, token


def _held_kid(client: LicenseClient) -> str | None:
    document = client._document
    return document.kid if document else None


def test_the_client_drops_a_document_of_a_retired_key_and_fetches_one_signed_by_the_current_key(
    make_client: Callable[..., LicenseClient], live_server: LiveServer
) -> None:
    client = make_client()
    assert client.refresh() is True
    old, new, _ = _rotate_and_retire_on_the_server(live_server)
    assert _held_kid(client) == old
    assert client.refresh() is True  # fetches the list, drops the old document, polls for a full one
    assert _held_kid(client) == new
    assert client.license().status == "active"


def test_a_cached_document_of_a_retired_key_is_refused_even_with_the_server_down(
    make_client: Callable[..., LicenseClient], live_server: LiveServer, tmp_path: Path
) -> None:
    client = make_client()
    assert client.refresh() is True
    _, _, revocations = _rotate_and_retire_on_the_server(live_server)
    live_server.stop()
    # Accepted while offline (e.g. shipped with an update): the held document's key is retired, so it goes.
    assert client.accept_revocations(revocations) is True
    assert _held_kid(client) is None
    assert client.license().reason == "NO_LICENSE"
    assert not client.license().usable
    # A restart reads the cached list before it trusts the cached document: still refused.
    restarted = make_client()
    assert _held_kid(restarted) is None
    assert restarted.license().detail == "cached document refused: KEY_RETIRED"
    # So does a fresh install given the list at start, with the old document copied in.
    fresh_cache = tmp_path / "fresh-cache"
    fresh_cache.mkdir()
    shutil.copy(tmp_path / "client-cache" / DOCUMENT_FILE, fresh_cache / DOCUMENT_FILE)
    given = make_client(cache_dir=fresh_cache, revocations=revocations)
    assert _held_kid(given) is None


def test_the_client_refuses_an_older_revocation_list_than_the_one_it_holds(
    make_client: Callable[..., LicenseClient], live_server: LiveServer
) -> None:
    """No replay: list 1 would un-retire the key list 2 retired."""
    store = KeyStore(live_server.settings.keys_dir, PASSPHRASE)
    key_host = root_of(store)
    first = store.load().signer_kid
    second = key_host.issue_key(bundle_passphrase=PASSPHRASE).kid
    key_host.issue_key(bundle_passphrase=PASSPHRASE)
    list_1, list_2 = key_host.retire(first), key_host.retire(second)
    live_server.stop()
    client = make_client()
    assert client.accept_revocations(list_2) is True
    assert client.accept_revocations(list_1) is False
    assert client.license().detail == "revocation list refused: REVOCATIONS_OUTDATED"
    restarted = make_client(revocations=list_1)  # an old list given at start loses to the newer cached one
    assert restarted._revocations is not None
    assert restarted._revocations.sequence == 2
