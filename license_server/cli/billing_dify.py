"""``billing dify-sync``: the gauges Dify never reports (members, apps, vector space, documents, annotations), read
from a Dify PostgreSQL database and set through the billing service, once or on a schedule.

The Dify database is opened read-only (see ``inner_billing.dify_database`` for the queries); its URL, which carries a
password, is read from the option or ``LICENSE_SERVER_DIFY_DATABASE_URL`` and never printed.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import click

from license_server.billing.accounts import service as accounts
from license_server.cli.common import fail, json_option, settings, usage_error
from license_server.errors import LicenseServerError
from license_server.inner_billing.service import InnerBilling, SyncResult, sync_gauges
from license_server.runtime import Runtime

# Reading Dify's database can fail in many ways (unreachable, a renamed column, a timeout); each is one line.
_READ_ERRORS: tuple[type[BaseException], ...] = (OSError, TimeoutError, ValueError)


def _read_errors() -> tuple[type[BaseException], ...]:
    import asyncpg

    return (*_READ_ERRORS, asyncpg.PostgresError, asyncpg.InterfaceError)


def _summary(result: SyncResult) -> dict[str, Any]:
    return {"tenants": result.tenants, "gauges": result.gauges, "failures": result.failures}


def _print(result: SyncResult, *, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(_summary(result)))
        return
    click.echo(f"synced {result.tenants} workspace(s), {result.gauges} gauge(s), {len(result.failures)} failure(s)")
    for failure in result.failures:
        click.echo(f"  {failure['tenant_id']}: [{failure['code']}] {failure['detail']}", err=True)


async def _sync_once(runtime: Runtime, billing: InnerBilling, platform_id: uuid.UUID, dify_url: str) -> SyncResult:
    from license_server.inner_billing.dify_database import read_counts

    async with runtime.session_factory() as session:
        platform = accounts.platform_snapshot(await accounts.get_platform(session, platform_id))
    counts = await read_counts(dify_url)
    return await sync_gauges(billing, platform, counts)


@click.command("dify-sync")
@click.option("--platform", "platform_id", type=click.UUID, required=True, help="The Dify Cloud platform's id.")
@click.option(
    "--dify-database",
    "dify_url",
    default=None,
    help="Dify's PostgreSQL URL (postgresql://user:pass@host/dify); default: $LICENSE_SERVER_DIFY_DATABASE_URL.",
)
@click.option("--once", is_flag=True, help="Sync once and exit (exit 1 if Dify's database cannot be read).")
@click.option(
    "--every",
    "every_seconds",
    type=click.FloatRange(min=1),
    default=None,
    help="Sync every SECONDS until stopped; a failed run is reported and retried at the next one.",
)
@json_option
def dify_sync(
    platform_id: uuid.UUID, dify_url: str | None, once: bool, every_seconds: float | None, as_json: bool
) -> None:
    """Set each Dify workspace's gauges from Dify's database (tenant id = the account's external id)."""
    if once == (every_seconds is not None):
        usage_error("give exactly one of --once and --every SECONDS", as_json=as_json)
    config = settings()
    if dify_url is None and config.dify_database_url is not None:
        dify_url = config.dify_database_url.get_secret_value()  # the setting LICENSE_SERVER_DIFY_DATABASE_URL
    if not dify_url:
        usage_error("give --dify-database or set LICENSE_SERVER_DIFY_DATABASE_URL", as_json=as_json)
    database_url: str = dify_url

    async def main() -> None:
        runtime = Runtime.build(config)
        billing = InnerBilling(runtime.billing, config.dify_billing)
        try:
            while True:
                try:
                    _print(await _sync_once(runtime, billing, platform_id, database_url), as_json=as_json)
                except _read_errors() as exc:
                    # The exception's text, never the URL: it may carry Dify's database password.
                    if once:
                        fail(
                            f"cannot read Dify's database: {exc.__class__.__name__}: {exc}",
                            "dify_database",
                            as_json=as_json,
                        )
                    click.echo(f"error [dify_database]: {exc.__class__.__name__}: {exc}; retrying", err=True)
                if once:
                    return
                assert every_seconds is not None
                await asyncio.sleep(every_seconds)
        finally:
            await runtime.close()

    try:
        asyncio.run(main())
    except LicenseServerError as exc:  # e.g. no such platform
        fail(exc.detail, exc.code, as_json=as_json)
    except KeyboardInterrupt:
        pass
