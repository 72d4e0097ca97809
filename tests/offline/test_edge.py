"""The edge: the deployment API from one license file, local usage and its export, trusted time, file swaps."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from litestar.testing import AsyncTestClient
from sqlalchemy import Connection

from license_server.edge import service
from license_server.edge.app import create_edge_app
from license_server.edge.runtime import EdgeRuntime, edge_license_state
from license_server.edge.store import EDGE_MIGRATIONS, EDGE_VERSION_TABLE, EdgeBase, create_edge_engine, prepare
from license_server.offline import files
from license_server.offline.install import load_or_create_install_key
from license_server.signing.keys import KeyStore
from license_server.verifier import Reason, VerificationError, Verifier
from tests.conftest import MovableClock
from tests.crypto.conftest import NOW
from tests.offline.conftest import FINGERPRINT, LicenseFileFactory

EdgeFactory = Callable[..., EdgeRuntime]


def _read(path: Path) -> str:
    return path.read_text()


def _write(path: Path, text: str) -> None:
    path.write_text(text)


@pytest.fixture
def edge_clock() -> MovableClock:
    return MovableClock(NOW)


@pytest.fixture
def bound_file(make_license_file: LicenseFileFactory, data_dir: Path) -> Callable[..., str]:
    """License files bound to this data directory's install key (made on first use)."""
    key = files.install_key_id(load_or_create_install_key(data_dir).public_key())

    def make(**overrides: Any) -> str:
        binding = {
            "activation_id": "7d1f0c3c-2d7a-4c4e-9d0b-8f6f0c2b7a11",
            "fingerprint": FINGERPRINT,
            "install_key": key,
        }
        return make_license_file(**{"binding": binding, **overrides})

    return make


@pytest.fixture
def license_path(tmp_path: Path, bound_file: Callable[..., str]) -> Path:
    path = tmp_path / "customer.lic"
    path.write_text(bound_file())
    return path


@pytest.fixture
def make_edge(offline_store: KeyStore, data_dir: Path, license_path: Path, edge_clock: MovableClock) -> EdgeFactory:
    def make(**overrides: Any) -> EdgeRuntime:
        arguments: dict[str, Any] = {
            "license_path": license_path,
            "verifier": Verifier(offline_store.load().root_public_key, clock=edge_clock),
            "data_dir": data_dir,
            "fingerprint": FINGERPRINT,
            "clock": edge_clock,
            **overrides,
        }
        return EdgeRuntime(**arguments)

    return make


@pytest.fixture
async def edge_client(make_edge: EdgeFactory) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(create_edge_app(make_edge())) as client:
        yield client


async def test_edge_serves_the_files_document_with_its_status_and_304_when_unchanged(
    edge_client: AsyncTestClient[Any], license_path: Path
) -> None:
    response = await edge_client.get("/v1/license")
    assert response.status_code == 200
    assert response.text == files.dearmor(_read(license_path))
    assert (response.headers["license-status"], response.headers["license-status-reason"]) == ("active", "ACTIVE")
    again = await edge_client.get("/v1/license", headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304
    assert (await edge_client.get("/health/live")).status_code == 200
    ready = await edge_client.get("/health/ready")
    assert ready.json() == {"status": "ok", "checks": {"database": "ok", "license_file": "ok"}}


async def test_usage_is_recorded_idempotently_and_exported_as_a_chain_the_vendor_accepts(
    edge_client: AsyncTestClient[Any], make_edge: EdgeFactory, data_dir: Path, edge_clock: MovableClock
) -> None:
    body = {
        "measured_at": "2031-03-14T10:00:00Z",
        "idempotency_key": "r-1",
        "seats_used": 30,
        "workspaces": [{"id": "ws-1", "members": 60}, {"id": "ws-2", "members": 3}],
    }
    first = await edge_client.post("/v1/usage", json=body)
    assert first.status_code == 200, first.text
    assert first.json()["usage"] == {"workspaces": 2, "members_per_workspace": 60, "licensed_seats": 30}
    assert first.json()["over_limit"] == []  # the sample claims' limits are not enabled
    duplicate = await edge_client.post("/v1/usage", json=body)
    assert duplicate.json()["duplicate"] is True
    bad = await edge_client.post(
        "/v1/usage", json={**body, "idempotency_key": "r-2", "workspaces": [{"id": "a", "members": 1}] * 2}
    )
    assert (bad.status_code, bad.json()["code"]) == (400, "validation_error")

    edge = make_edge()
    async with edge.session_factory() as session:
        text, seq, count = await service.export_usage_report(session, data_dir=data_dir, now=edge_clock())
        empty, seq2, count2 = await service.export_usage_report(session, data_dir=data_dir, now=edge_clock())
        again = await service.stored_usage_report(session, seq=1)
    await edge.engine.dispose()
    assert (seq, count, seq2, count2) == (1, 1, 2, 0)
    assert again == text  # a lost file can be written again, byte for byte
    first_report, second_report = files.parse_usage_report(text), files.parse_usage_report(empty)
    files.check_next_link(first_report, last_seq=0, last_hash=files.genesis_hash(first_report.install_key))
    files.check_next_link(second_report, last_seq=1, last_hash=first_report.hash)
    assert first_report.measurements[0].workspaces == (("ws-1", 60), ("ws-2", 3))


async def test_a_clock_set_back_is_lost_clock_rollback_even_after_a_restart(
    make_edge: EdgeFactory, edge_clock: MovableClock
) -> None:
    async with AsyncTestClient(create_edge_app(make_edge())) as client:
        edge_clock.advance(timedelta(days=3))
        assert (await client.get("/v1/license")).headers["license-status"] == "active"
        edge_clock.advance(timedelta(hours=-2))
        rolled = await client.get("/v1/license")
        assert (rolled.headers["license-status"], rolled.headers["license-status-reason"]) == ("lost", "CLOCK_ROLLBACK")
    async with AsyncTestClient(create_edge_app(make_edge())) as client:  # the mark was persisted
        assert (await client.get("/v1/license")).headers["license-status-reason"] == "CLOCK_ROLLBACK"
        edge_clock.advance(timedelta(hours=2))
        assert (await client.get("/v1/license")).headers["license-status-reason"] == "ACTIVE"


async def test_past_the_license_end_the_edge_reports_expired_rather_than_refusing_to_serve(
    make_edge: EdgeFactory, edge_clock: MovableClock
) -> None:
    async with AsyncTestClient(create_edge_app(make_edge())) as client:
        edge_clock.advance(timedelta(days=400))  # past expires_at + grace of the sample claims
        response = await client.get("/v1/license")
        assert response.status_code == 200
        assert (response.headers["license-status"], response.headers["license-status-reason"]) == ("expired", "EXPIRED")


async def test_a_renewed_file_is_picked_up_and_a_tampered_one_is_refused_while_the_old_stays(
    edge_client: AsyncTestClient[Any], license_path: Path, bound_file: Callable[..., str]
) -> None:
    before = await edge_client.get("/v1/license")
    renewed = bound_file(expires_at="2033-01-01T00:00:00Z")
    _write(license_path, renewed)
    after = await edge_client.get("/v1/license")
    assert after.text == files.dearmor(renewed)
    assert after.headers["etag"] != before.headers["etag"]
    _write(license_path, renewed.replace("Customer: ", "Customer: X"))
    still = await edge_client.get("/v1/license")
    assert still.text == files.dearmor(renewed)
    ready = await edge_client.get("/health/ready")
    assert ready.status_code == 200
    assert "new file refused" in ready.json()["checks"]["license_file"]


async def test_the_edge_refuses_a_file_bound_to_another_machine(make_edge: EdgeFactory) -> None:
    edge = make_edge(fingerprint="fp1:another-machine")
    with pytest.raises(VerificationError) as caught:
        await edge.start()
    await edge.engine.dispose()
    assert caught.value.reason is Reason.FINGERPRINT_MISMATCH


async def test_with_an_edge_token_the_deployment_api_requires_it(make_edge: EdgeFactory) -> None:
    async with AsyncTestClient(create_edge_app(make_edge(token="edge-secret"))) as client:
        assert (await client.get("/v1/license")).status_code == 401
        ok = await client.get("/v1/license", headers={"Authorization": "Bearer edge-secret"})
        assert ok.status_code == 200
        assert (await client.get("/health/ready")).status_code == 200  # health stays open for probes


async def test_edge_license_state_gives_mounted_features_the_claims_and_status(make_edge: EdgeFactory) -> None:
    edge = make_edge()
    await edge.start()
    try:
        state = await edge_license_state(edge)
    finally:
        await edge.close()
    assert state.claims["binding"]["fingerprint"] == FINGERPRINT
    assert (state.status.status.value, state.status.reason.value) == ("active", "ACTIVE")


async def test_the_edge_exports_metrics_behind_its_token_with_request_ids(make_edge: EdgeFactory) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from license_server.config import Settings

    token = "edge-metrics-token-0123456789"
    settings = Settings(metrics_token=token)
    async with AsyncTestClient(create_edge_app(make_edge(), settings=settings)) as client:
        assert (await client.get("/metrics")).status_code == 401

        def polls(text: str) -> float:
            return sum(
                sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name == "license_server_http_requests_total"
                and sample.labels == {"app": "edge", "method": "GET", "route": "/v1/license", "status": "200"}
            )

        headers = {"Authorization": f"Bearer {token}"}
        before = polls((await client.get("/metrics", headers=headers)).text)
        polled = await client.get("/v1/license", headers={"X-Request-Id": "edge-poll-1"})
        assert polled.headers["x-request-id"] == "edge-poll-1"
        after = polls((await client.get("/metrics", headers=headers)).text)
    assert after - before == 1
    untokened = create_edge_app(make_edge(), settings=Settings())
    async with AsyncTestClient(untokened) as client:
        assert (await client.get("/metrics", headers=headers)).status_code == 404


# -- the edge's own migrations --------------------------------------------------------------------------------------
PREVIOUS_RELEASE_EDGE_DB = Path(__file__).parent / "fixtures" / "edge_db_c09879d.sql"


def _edge_tables(path: Path) -> dict[str, list[str]]:
    connection = sqlite3.connect(path)
    try:
        names = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {name: [column[1] for column in connection.execute(f'PRAGMA table_info("{name}")')] for name in names}
    finally:
        connection.close()


def _restore_previous_release_db(data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(data_dir / "edge.db")
    try:
        connection.executescript(PREVIOUS_RELEASE_EDGE_DB.read_text())
    finally:
        connection.close()


async def test_an_edge_db_made_by_the_previous_release_is_migrated_in_place_and_served(
    make_edge: EdgeFactory, data_dir: Path, tmp_path: Path
) -> None:
    """edge.db as release c09879d left it (create_all, no version table; its SQL dump made by that release's code,
    with one usage report in it): the upgraded edge stamps and migrates it, keeps the report, and serves."""
    _restore_previous_release_db(data_dir)
    async with AsyncTestClient(create_edge_app(make_edge())) as client:
        assert (await client.get("/v1/license")).status_code == 200
    tables = _edge_tables(data_dir / "edge.db")
    connection = sqlite3.connect(data_dir / "edge.db")
    try:
        [(version,)] = connection.execute("SELECT version_num FROM edge_alembic_version").fetchall()
        kept = connection.execute("SELECT idempotency_key FROM edge_usage").fetchall()
    finally:
        connection.close()
    assert version == ScriptDirectory(str(EDGE_MIGRATIONS)).get_current_head()
    assert kept == [("before-upgrade",)]
    # ... and it is the schema a new edge gets.
    fresh_dir = tmp_path / "fresh"
    engine = create_edge_engine(fresh_dir)
    try:
        await prepare(engine)
    finally:
        await engine.dispose()
    assert tables == _edge_tables(fresh_dir / "edge.db")


async def test_the_edge_migrations_create_the_schema_its_models_declare(tmp_path: Path) -> None:
    engine = create_edge_engine(tmp_path)
    try:
        await prepare(engine)
        await prepare(engine)  # idempotent: a restart finds nothing to do

        def differences(connection: Connection) -> list[Any]:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "version_table": EDGE_VERSION_TABLE}
            )
            return list(compare_metadata(context, EdgeBase.metadata))

        async with engine.connect() as connection:
            assert await connection.run_sync(differences) == []
    finally:
        await engine.dispose()
