"""Shared fixtures: keys, a clock tests can move, and a database on each backend (SQLite and PostgreSQL).

PostgreSQL tests use the server at 127.0.0.1:5432 (database ``test`` for administration, user ``postgres``). When it
is unreachable they are skipped with the reason, unless LICENSE_SERVER_REQUIRE_POSTGRES=1 makes that a failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# Settings read the environment; a developer's own LICENSE_SERVER_* variables must not leak into the tests.
# The REQUIRE_* switches are the test run's own (CI sets them), not the server's settings.
_TEST_SWITCHES = {"LICENSE_SERVER_REQUIRE_POSTGRES", "LICENSE_SERVER_REQUIRE_BROWSER"}
for _name in [n for n in os.environ if n.startswith("LICENSE_SERVER_") and n not in _TEST_SWITCHES]:
    del os.environ[_name]

from license_server.all_models import Base  # noqa: E402
from license_server.app import create_app  # noqa: E402
from license_server.auth.tokens import Actor, Role, cli_actor, create_token  # noqa: E402
from license_server.config import Settings  # noqa: E402
from license_server.db.migrate import upgrade_database  # noqa: E402
from license_server.db.session import create_engine, create_session_factory  # noqa: E402
from license_server.licenses import service  # noqa: E402
from license_server.licenses.service import IssuedLicense  # noqa: E402
from license_server.licenses.terms import LicenseTerms  # noqa: E402
from license_server.runtime import Runtime  # noqa: E402
from license_server.signing.keys import KeyStore  # noqa: E402
from license_server.signing.service import Signer  # noqa: E402
from tests.keyring import make_keys  # noqa: E402

PASSPHRASE = b"test-passphrase-not-a-secret"
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
REQUIRE_POSTGRES = os.environ.get("LICENSE_SERVER_REQUIRE_POSTGRES") == "1"


class MovableClock:
    """A clock tests set and advance; every service takes it in place of the wall clock."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock(datetime(2026, 6, 1, 12, 0, tzinfo=UTC))


# -- keys --------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def shared_keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One keyring for the session; tests that rotate or retire keys make their own."""
    keys_dir = tmp_path_factory.mktemp("keys")
    make_keys(keys_dir, PASSPHRASE)
    return keys_dir


def make_settings(data_dir: Path, keys_dir: Path, database_url: str | None, **overrides: Any) -> Settings:
    """Test settings. No poll caching by default, so tests see every write at once; caching has tests of its own."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "keys_dir": keys_dir,
        "database_url": database_url,
        "key_passphrase": PASSPHRASE.decode(),
        "keyring_refresh_seconds": 0,
        "poll_cache_seconds": 0,
        "rate_limit_per_address": 100_000,
        "rate_limit_per_license_key": 100_000,
        "rate_limit_failed_auth_per_address": 100_000,
        **overrides,
    }
    return Settings(**values)


# -- databases ---------------------------------------------------------------------------------------------------
def _postgres_unavailable_reason() -> str | None:
    import asyncpg

    async def probe() -> None:
        connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=3)
        await connection.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"PostgreSQL at 127.0.0.1:5432 is unreachable ({exc.__class__.__name__}: {exc})"
    return None


@dataclass
class PostgresDatabase:
    url: str
    name: str


@pytest.fixture(scope="session")
def postgres_database(tmp_path_factory: pytest.TempPathFactory, shared_keys_dir: Path) -> Iterator[PostgresDatabase]:
    """A database of its own for this test session, migrated once; tests truncate it before use."""
    reason = _postgres_unavailable_reason()
    if reason:
        if REQUIRE_POSTGRES:
            pytest.fail(f"{reason}; LICENSE_SERVER_REQUIRE_POSTGRES=1 forbids skipping", pytrace=False)
        print(f"\nSKIPPING PostgreSQL tests: {reason}")
        pytest.skip(reason)
    import asyncpg

    name = f"ls_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"

    async def admin(statement: str) -> None:
        connection = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    upgrade_database(make_settings(tmp_path_factory.mktemp("pg-data"), shared_keys_dir, url))
    try:
        yield PostgresDatabase(url=url, name=name)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory, shared_keys_dir: Path) -> Path:
    """A migrated SQLite file that each test copies, so migrations run once per session."""
    data_dir = tmp_path_factory.mktemp("sqlite-template")
    upgrade_database(make_settings(data_dir, shared_keys_dir, None))
    return data_dir / "license-server.db"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def keys_dir(shared_keys_dir: Path) -> Path:
    """The keyring a test's runtime uses. Tests that rotate or retire keys override this with their own."""
    return shared_keys_dir


@pytest.fixture
def own_keys_dir(tmp_path: Path) -> Path:
    keys = tmp_path / "keys"
    make_keys(keys, PASSPHRASE)
    return keys


def backend_settings(
    backend: str, tmp_path: Path, keys_dir: Path, request: pytest.FixtureRequest, **overrides: Any
) -> Settings:
    """Test settings on a fresh database of ``backend`` (a copy of the migrated SQLite template, or this test's
    PostgreSQL database); ``overrides`` as for ``make_settings``."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    if backend == "sqlite":
        shutil.copy(request.getfixturevalue("sqlite_template"), data_dir / "license-server.db")
        return make_settings(data_dir, keys_dir, None, **overrides)
    database: PostgresDatabase = request.getfixturevalue("postgres_database")
    return make_settings(data_dir, keys_dir, database.url, **overrides)


@pytest.fixture
def settings(backend: str, tmp_path: Path, keys_dir: Path, request: pytest.FixtureRequest) -> Settings:
    return backend_settings(backend, tmp_path, keys_dir, request)


async def _truncate_all(runtime: Runtime) -> None:
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    async with runtime.engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {tables} CASCADE"))


@pytest.fixture
async def runtime(settings: Settings, clock: MovableClock) -> AsyncIterator[Runtime]:
    signer = Signer(KeyStore(settings.keys_dir, PASSPHRASE), refresh_seconds=0)
    engine = create_engine(settings)
    built = Runtime(
        settings=settings,
        signer=signer,
        engine=engine,
        session_factory=create_session_factory(engine),
        clock=clock,
    )
    if not settings.is_sqlite:
        await _truncate_all(built)
    try:
        yield built
    finally:
        await built.close()


@pytest.fixture
async def session(runtime: Runtime) -> AsyncIterator[AsyncSession]:
    async with runtime.session_factory() as db:
        yield db


@pytest.fixture
def app(runtime: Runtime) -> Litestar:
    return create_app(runtime)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """Requests run in the test's own event loop, so the database pool is shared safely."""
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]  # Litestar narrows the ASGI scope types
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as test_client:
        yield test_client


TokenFactory = Callable[[Role], Awaitable[str]]


@pytest.fixture
def make_token(runtime: Runtime) -> TokenFactory:
    async def make(role: Role) -> str:
        async with runtime.session_factory() as db:
            created = await create_token(
                db,
                hasher=runtime.hasher,
                actor=cli_actor(),
                name=f"test-{role}",
                role=role,
                clock=runtime.clock,
            )
            return created.secret

    return make


@pytest.fixture
async def owner_headers(make_token: TokenFactory) -> dict[str, str]:
    return {"Authorization": f"Bearer {await make_token(Role.OWNER)}"}


@pytest.fixture
def actor() -> Actor:
    return Actor(name="test:owner", role=Role.OWNER)


LicenseFactory = Callable[..., Awaitable[IssuedLicense]]


@pytest.fixture
def make_license(runtime: Runtime, actor: Actor) -> LicenseFactory:
    """Issue a license for a fresh customer; keyword arguments override issue_license's."""

    async def make(**overrides: Any) -> IssuedLicense:
        async with runtime.session_factory() as db:
            customer = await service.create_customer(db, actor=actor, name="Acme Corp", clock=runtime.clock)
            arguments: dict[str, Any] = {
                "customer_id": customer.id,
                "expires_at": runtime.clock() + timedelta(days=365),
                "terms": LicenseTerms.model_validate({"workspaces": {"enabled": True, "limit": 5}}),
                "clock": runtime.clock,
                **overrides,
            }
            return await service.issue_license(db, actor=actor, hasher=runtime.hasher, **arguments)

    return make
