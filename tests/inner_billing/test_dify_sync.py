"""``billing dify-sync`` against a PostgreSQL database with Dify's tables (a faithful subset of Dify's ``api/models``:
the tables and columns the queries read, with Dify's types, defaults and constraints), made in a scratch database
of this suite's own prefix and dropped afterwards. Skipped with the reason when PostgreSQL is unreachable."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from license_server.cli.main import cli
from license_server.config import Settings
from license_server.inner_billing import dify_database
from license_server.inner_billing.service import InnerBilling, TenantCounts, sync_gauges
from license_server.runtime import Runtime
from tests.billing.conftest import Platform
from tests.conftest import PASSPHRASE, POSTGRES_ADMIN_URL, REQUIRE_POSTGRES, _postgres_unavailable_reason
from tests.inner_billing.conftest import DIFY_CLOUD, DifyBilling

DIFY_SCHEMA = """
CREATE TABLE tenants (
    id uuid NOT NULL CONSTRAINT tenant_pkey PRIMARY KEY,
    name varchar(255) NOT NULL,
    encrypt_public_key text,
    plan varchar(255) NOT NULL DEFAULT 'basic'::character varying,
    status varchar(255) NOT NULL DEFAULT 'normal'::character varying,
    custom_config text,
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE accounts (
    id uuid NOT NULL CONSTRAINT account_pkey PRIMARY KEY,
    name varchar(255) NOT NULL,
    email varchar(255) NOT NULL,
    status varchar(16) NOT NULL DEFAULT 'active'::character varying,
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE tenant_account_joins (
    id uuid NOT NULL CONSTRAINT tenant_account_join_pkey PRIMARY KEY,
    tenant_id uuid NOT NULL,
    account_id uuid NOT NULL,
    current boolean NOT NULL DEFAULT false,
    role varchar(16) NOT NULL DEFAULT 'normal',
    invited_by uuid,
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT unique_tenant_account_join UNIQUE (tenant_id, account_id)
);
CREATE INDEX tenant_account_join_tenant_id_idx ON tenant_account_joins (tenant_id);
CREATE TABLE apps (
    id uuid NOT NULL CONSTRAINT app_pkey PRIMARY KEY,
    tenant_id uuid NOT NULL,
    name varchar(255) NOT NULL,
    description text NOT NULL DEFAULT ''::character varying,
    mode varchar(255) NOT NULL,
    icon varchar(255),
    status varchar(255) NOT NULL DEFAULT 'normal'::character varying,
    enable_site boolean NOT NULL,
    enable_api boolean NOT NULL,
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX app_tenant_id_idx ON apps (tenant_id);
CREATE TABLE datasets (
    id uuid NOT NULL CONSTRAINT dataset_pkey PRIMARY KEY,
    tenant_id uuid NOT NULL,
    name varchar(255) NOT NULL,
    indexing_technique varchar(255),
    created_by uuid NOT NULL,
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE documents (
    id uuid NOT NULL CONSTRAINT document_pkey PRIMARY KEY,
    tenant_id uuid NOT NULL,
    dataset_id uuid NOT NULL,
    position integer NOT NULL,
    data_source_type varchar(255) NOT NULL,
    batch varchar(255) NOT NULL,
    name varchar(255) NOT NULL,
    created_from varchar(255) NOT NULL,
    created_by uuid NOT NULL,
    indexing_status varchar(255) NOT NULL DEFAULT 'waiting'::character varying,
    enabled boolean NOT NULL DEFAULT true,
    archived boolean NOT NULL DEFAULT false,
    word_count integer,
    doc_form varchar(255) NOT NULL DEFAULT 'text_model'::character varying,
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX document_dataset_id_idx ON documents (dataset_id);
CREATE TABLE document_segments (
    id uuid NOT NULL CONSTRAINT document_segment_pkey PRIMARY KEY,
    tenant_id uuid NOT NULL,
    dataset_id uuid NOT NULL,
    document_id uuid NOT NULL,
    position integer NOT NULL,
    content text NOT NULL,
    answer text,
    word_count integer NOT NULL,
    tokens integer NOT NULL,
    keywords json,
    index_node_id varchar(255),
    index_node_hash varchar(255),
    hit_count integer NOT NULL DEFAULT 0,
    enabled boolean NOT NULL DEFAULT true,
    status varchar(255) NOT NULL DEFAULT 'waiting'::character varying,
    created_by uuid NOT NULL,
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX document_segment_tenant_idx ON document_segments (tenant_id);
CREATE TABLE message_annotations (
    id uuid NOT NULL CONSTRAINT message_annotation_pkey PRIMARY KEY,
    app_id uuid NOT NULL,
    conversation_id uuid,
    message_id uuid,
    question text,
    content text NOT NULL,
    hit_count integer NOT NULL DEFAULT 0,
    account_id uuid NOT NULL,
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX message_annotation_app_idx ON message_annotations (app_id);
"""

BUSY, SOLO, EMPTY = (str(uuid.UUID(int=n)) for n in (1, 2, 3))  # ordered as the query orders them
MB = 1024 * 1024


def _admin(statement: str) -> None:
    import asyncpg

    async def run() -> None:
        connection = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


async def _execute(url: str, *statements: tuple[str, list[Any]] | str) -> None:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        for statement in statements:
            if isinstance(statement, str):
                await connection.execute(statement)
            else:
                await connection.executemany(statement[0], statement[1])
    finally:
        await connection.close()


def _fill(url: str) -> None:
    """BUSY: 2 members, 3 apps, 2 documents, 1.5 MB of indexed text (plus a disabled and an unindexed segment that do
    not count), 4 annotations on its apps. SOLO: its owner only. EMPTY: no one."""
    accounts = [uuid.uuid4() for _ in range(3)]
    apps = [uuid.uuid4() for _ in range(3)]
    dataset, documents = uuid.uuid4(), [uuid.uuid4(), uuid.uuid4()]
    owner = accounts[0]
    segment = (
        "INSERT INTO document_segments (id, tenant_id, dataset_id, document_id, position, content, answer, word_count,"
        " tokens, enabled, status, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, 1, 1, $8, $9, $10)"
    )
    asyncio.run(
        _execute(
            url,
            ("INSERT INTO tenants (id, name) VALUES ($1, $2)", [(uuid.UUID(t), t) for t in (BUSY, SOLO, EMPTY)]),
            (
                "INSERT INTO accounts (id, name, email) VALUES ($1, 'a', 'a@example.com')",
                [(a,) for a in accounts],
            ),
            (
                "INSERT INTO tenant_account_joins (id, tenant_id, account_id, role) VALUES ($1, $2, $3, $4)",
                [
                    (uuid.uuid4(), uuid.UUID(BUSY), accounts[0], "owner"),
                    (uuid.uuid4(), uuid.UUID(BUSY), accounts[1], "editor"),
                    (uuid.uuid4(), uuid.UUID(SOLO), accounts[2], "owner"),
                ],
            ),
            (
                "INSERT INTO apps (id, tenant_id, name, mode, enable_site, enable_api) VALUES ($1, $2, 'app', 'chat',"
                " true, true)",
                [(a, uuid.UUID(BUSY)) for a in apps],
            ),
            (
                "INSERT INTO datasets (id, tenant_id, name, created_by) VALUES ($1, $2, 'kb', $3)",
                [(dataset, uuid.UUID(BUSY), owner)],
            ),
            (
                "INSERT INTO documents (id, tenant_id, dataset_id, position, data_source_type, batch, name,"
                " created_from, created_by, indexing_status) VALUES ($1, $2, $3, $4, 'upload_file', 'b', 'd', 'web',"
                " $5, 'completed')",
                [(d, uuid.UUID(BUSY), dataset, n, owner) for n, d in enumerate(documents)],
            ),
            (
                segment,
                [
                    (uuid.uuid4(), uuid.UUID(BUSY), dataset, documents[0], 1, "x" * MB, None, True, "completed", owner),
                    (
                        uuid.uuid4(),
                        uuid.UUID(BUSY),
                        dataset,
                        documents[1],
                        1,
                        "q" * (MB // 4),
                        "a" * (MB // 4),
                        True,
                        "completed",
                        owner,
                    ),
                    (
                        uuid.uuid4(),
                        uuid.UUID(BUSY),
                        dataset,
                        documents[1],
                        2,
                        "x" * 5 * MB,
                        None,
                        False,
                        "completed",
                        owner,
                    ),
                    (
                        uuid.uuid4(),
                        uuid.UUID(BUSY),
                        dataset,
                        documents[1],
                        3,
                        "x" * 5 * MB,
                        None,
                        True,
                        "indexing",
                        owner,
                    ),
                ],
            ),
            (
                "INSERT INTO message_annotations (id, app_id, content, account_id) VALUES ($1, $2, 'c', $3)",
                [(uuid.uuid4(), apps[n % 2], owner) for n in range(4)],
            ),
        )
    )


@pytest.fixture(scope="module")
def dify_db_url() -> Iterator[str]:
    reason = _postgres_unavailable_reason()
    if reason:
        if REQUIRE_POSTGRES:
            pytest.fail(f"{reason}; LICENSE_SERVER_REQUIRE_POSTGRES=1 forbids skipping", pytrace=False)
        print(f"\nSKIPPING the dify-sync tests (they need Dify's tables in PostgreSQL): {reason}")
        pytest.skip(reason)
    name = f"dify13_dify_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    _admin(f'CREATE DATABASE "{name}"')
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    try:
        asyncio.run(_execute(url, DIFY_SCHEMA))
        _fill(url)
        yield url
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


EXPECTED = [
    TenantCounts(BUSY, members=2, apps=3, vector_space=2, documents_upload_quota=2, annotation_quota_limit=4),
    TenantCounts(SOLO, members=1, apps=0, vector_space=0, documents_upload_quota=0, annotation_quota_limit=0),
    TenantCounts(EMPTY, members=0, apps=0, vector_space=0, documents_upload_quota=0, annotation_quota_limit=0),
]


async def test_the_queries_count_each_workspace(dify_db_url: str) -> None:
    assert await dify_database.read_counts(dify_db_url) == EXPECTED


async def test_the_dify_database_is_read_in_a_read_only_transaction(dify_db_url: str) -> None:
    import asyncpg

    async with dify_database.read_only(dify_db_url) as connection:
        assert await connection.fetchval("SHOW transaction_read_only") == "on"
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await connection.execute("DELETE FROM apps")
    assert await dify_database.read_counts(dify_db_url) == EXPECTED


async def test_synced_counts_are_the_sizes_dify_sees(
    dify_db_url: str, runtime: Runtime, dify: DifyBilling, dify_platform: Platform
) -> None:
    billing = InnerBilling(runtime.billing, runtime.settings.dify_billing)
    async with runtime.session_factory() as session:
        from license_server.billing.accounts import service as accounts

        platform = accounts.platform_snapshot(await accounts.get_platform(session, uuid.UUID(dify_platform.id)))
    result = await sync_gauges(billing, platform, await dify_database.read_counts(dify_db_url))
    assert (result.tenants, result.gauges, result.failures) == (3, 15, [])
    busy = await dify.get("/subscription/info", tenant_id=BUSY)
    assert busy["members"] == {"size": 2, "limit": 1}
    assert busy["apps"] == {"size": 3, "limit": 10}
    assert busy["vector_space"] == {"size": 2.0, "limit": 10}
    assert busy["documents_upload_quota"] == {"size": 2, "limit": 50}
    assert busy["annotation_quota_limit"] == {"size": 4, "limit": 10}
    # a reconciliation: counts that go down are set down
    lower = [TenantCounts(BUSY, members=1, apps=0, vector_space=0, documents_upload_quota=0, annotation_quota_limit=0)]
    await sync_gauges(billing, platform, lower)
    assert (await dify.get("/subscription/info", tenant_id=BUSY))["apps"]["size"] == 0


async def test_a_workspace_whose_plan_makes_a_gauge_monthly_is_reported_and_the_others_go_on(
    runtime: Runtime, make_platform: Any, client: httpx.AsyncClient
) -> None:
    from tests.billing.conftest import tiny_plan

    plan = tiny_plan("odd", {"apps": {"kind": "monthly", "limit": 5}})
    odd = await make_platform(default_plan="odd", catalogues=(plan,))
    billing = InnerBilling(runtime.billing, runtime.settings.dify_billing)
    async with runtime.session_factory() as session:
        from license_server.billing.accounts import service as accounts

        platform = accounts.platform_snapshot(await accounts.get_platform(session, uuid.UUID(odd.id)))
    result = await sync_gauges(billing, platform, EXPECTED[:1])
    assert result.tenants == 0
    assert [f["code"] for f in result.failures] == ["quota_kind_mismatch"]


# -- the command -------------------------------------------------------------------------------------------------
@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "LICENSE_SERVER_DATA_DIR": str(settings.data_dir),
        "LICENSE_SERVER_KEYS_DIR": str(settings.keys_dir),
        "LICENSE_SERVER_KEY_PASSPHRASE": PASSPHRASE.decode(),
        **({"LICENSE_SERVER_DATABASE_URL": settings.database_url} if settings.database_url else {}),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def _run(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _dify_platform(tmp_path: Path) -> str:
    path = tmp_path / "dify-cloud.json"
    path.write_text(DIFY_CLOUD.model_dump_json())
    assert _run("billing", "plans", "import", str(path)).exit_code == 0
    created = _run("billing", "platforms", "create", "--name", "Dify Cloud", "--default-plan", "dify-sandbox", "--json")
    return str(json.loads(created.output)["id"])


@pytest.mark.usefixtures("backend")
def test_dify_sync_once_reports_what_it_set(cli_env: dict[str, str], dify_db_url: str, tmp_path: Path) -> None:
    platform = _dify_platform(tmp_path)
    result = _run("billing", "dify-sync", "--platform", platform, "--dify-database", dify_db_url, "--once", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"tenants": 3, "gauges": 15, "failures": []}
    shown = _run("billing", "accounts", "show", "--platform", platform, "--account", BUSY, "--json")
    limits = {entry["key"]: entry for entry in json.loads(shown.output)["limits"]["limits"]}
    assert limits["apps"]["used"] == 3
    assert limits["annotation_quota"]["used"] == 4


@pytest.mark.usefixtures("backend")
def test_dify_sync_needs_exactly_one_schedule_and_never_prints_the_url(cli_env: dict[str, str], tmp_path: Path) -> None:
    platform = _dify_platform(tmp_path)
    neither = _run("billing", "dify-sync", "--platform", platform, "--dify-database", "postgresql://x@127.0.0.1/x")
    assert neither.exit_code == 2
    unreachable = "postgresql://dify:s3cret-password@127.0.0.1:1/dify"
    failed = _run("billing", "dify-sync", "--platform", platform, "--dify-database", unreachable, "--once")
    assert failed.exit_code == 1
    assert "dify_database" in failed.output
    assert "s3cret-password" not in failed.output


@pytest.mark.slow
@pytest.mark.usefixtures("backend")
def test_dify_sync_every_seconds_keeps_syncing(cli_env: dict[str, str], dify_db_url: str, tmp_path: Path) -> None:
    platform = _dify_platform(tmp_path)
    command = [str(Path(sys.executable).parent / "license-server"), "billing", "dify-sync", "--platform", platform]
    process = subprocess.Popen(
        [*command, "--every", "1", "--json"],
        env={**os.environ, **cli_env, "LICENSE_SERVER_DIFY_DATABASE_URL": dify_db_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        runs = [json.loads(process.stdout.readline()) for _ in range(2)]
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert runs == [{"tenants": 3, "gauges": 15, "failures": []}] * 2
