"""The counts Dify never reports, read from a Dify PostgreSQL database (``license-server billing dify-sync``).

Dify's ``/subscription/info`` carries sizes (members, apps, vector space, documents, annotations) that no Dify call
sends to the billing server: the server has to count them itself (contract §9). This module reads them, per
workspace, in one statement inside a **read-only** transaction on a connection whose every transaction defaults to
read-only, so a mistake here cannot change Dify's data. The tables and columns are Dify's own (``api/models``):

- members: rows of ``tenant_account_joins`` (one per account in the workspace, every role);
- apps: rows of ``apps`` (Dify deletes an app's row when the app is deleted);
- vector space, MB rounded up: the bytes of ``document_segments.content`` (and ``answer``, for Q&A segments) of the
  workspace's enabled, indexed (``status = 'completed'``) segments. The vector store itself is not reachable from
  here; the indexed text is the measure of what was embedded;
- documents: rows of ``documents`` (every uploaded document, archived or not: Dify's upload quota counts uploads);
- annotations: rows of ``message_annotations`` of the workspace's apps (the table has no tenant column; it is
  joined through ``apps.id = message_annotations.app_id``).

Every workspace in ``tenants`` is listed, with zeros where it has nothing, so a workspace that deleted everything is
reported as empty rather than left at its last counts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from license_server.inner_billing.service import TenantCounts

MEGABYTE = 1024 * 1024
COUNTS_QUERY = """
WITH members AS (
    SELECT tenant_id, count(*) AS n FROM tenant_account_joins GROUP BY tenant_id
), apps_per_tenant AS (
    SELECT tenant_id, count(*) AS n FROM apps GROUP BY tenant_id
), vector_bytes AS (
    SELECT tenant_id, sum(octet_length(content) + coalesce(octet_length(answer), 0)) AS n
    FROM document_segments
    WHERE enabled AND status = 'completed'
    GROUP BY tenant_id
), documents_per_tenant AS (
    SELECT tenant_id, count(*) AS n FROM documents GROUP BY tenant_id
), annotations AS (
    SELECT apps.tenant_id, count(*) AS n
    FROM message_annotations JOIN apps ON apps.id = message_annotations.app_id
    GROUP BY apps.tenant_id
)
SELECT tenants.id::text AS tenant_id,
       coalesce(members.n, 0) AS members,
       coalesce(apps_per_tenant.n, 0) AS apps,
       coalesce(vector_bytes.n, 0) AS vector_bytes,
       coalesce(documents_per_tenant.n, 0) AS documents,
       coalesce(annotations.n, 0) AS annotations
FROM tenants
LEFT JOIN members ON members.tenant_id = tenants.id
LEFT JOIN apps_per_tenant ON apps_per_tenant.tenant_id = tenants.id
LEFT JOIN vector_bytes ON vector_bytes.tenant_id = tenants.id
LEFT JOIN documents_per_tenant ON documents_per_tenant.tenant_id = tenants.id
LEFT JOIN annotations ON annotations.tenant_id = tenants.id
ORDER BY tenants.id
"""


def asyncpg_dsn(url: str) -> str:
    """A Dify ``postgresql://`` URL; SQLAlchemy's ``postgresql+asyncpg://`` spelling is accepted too."""
    for prefix in ("postgresql+asyncpg://", "postgres+asyncpg://"):
        if url.startswith(prefix):
            return "postgresql://" + url.removeprefix(prefix)
    return url


@asynccontextmanager
async def read_only(url: str, *, statement_seconds: float = 30.0) -> AsyncIterator[Any]:
    """A connection to Dify's database inside a read-only, repeatable-read transaction (one consistent snapshot),
    on a session whose transactions are read-only by default as well."""
    import asyncpg

    connection = await asyncpg.connect(
        asyncpg_dsn(url),
        timeout=statement_seconds,
        command_timeout=statement_seconds,
        server_settings={"default_transaction_read_only": "on", "application_name": "license-server dify-sync"},
    )
    try:
        async with connection.transaction(readonly=True, isolation="repeatable_read"):
            yield connection
    finally:
        await connection.close()


def mb_rounded_up(size_bytes: int) -> int:
    return -(-size_bytes // MEGABYTE)


async def read_counts(url: str, *, statement_seconds: float = 30.0) -> list[TenantCounts]:
    """Every workspace's counts (the module docstring says what each one counts)."""
    async with read_only(url, statement_seconds=statement_seconds) as connection:
        rows = await connection.fetch(COUNTS_QUERY)
    return [
        TenantCounts(
            tenant_id=row["tenant_id"],
            members=int(row["members"]),
            apps=int(row["apps"]),
            vector_space=mb_rounded_up(int(row["vector_bytes"])),
            documents_upload_quota=int(row["documents"]),
            annotation_quota_limit=int(row["annotations"]),
        )
        for row in rows
    ]
