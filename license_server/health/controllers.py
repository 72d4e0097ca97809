"""``/health/live`` says the process runs; ``/health/ready`` that it can serve: database reachable, key loaded, and
no scheduled job failing run after run (``LICENSE_SERVER_JOB_FAILURES_UNREADY`` in a row; the check names it)."""

from __future__ import annotations

import asyncio

from litestar import Controller, Response, get
from litestar.openapi import ResponseSpec
from sqlalchemy import text

from license_server.dependencies import RuntimeDep
from license_server.errors import KeyringError
from license_server.schemas_common import Model

READY_DATABASE_TIMEOUT_SECONDS = 3.0


class HealthOut(Model):
    status: str
    checks: dict[str, str]


class HealthController(Controller):
    path = "/health"
    tags = ["health"]

    @get("/live", summary="The process is running")
    async def live(self) -> HealthOut:
        return HealthOut(status="ok", checks={})

    @get(
        "/ready",
        summary="Database reachable and signing key loaded",
        responses={503: ResponseSpec(data_container=HealthOut, description="Not ready; checks say why")},
    )
    async def ready(self, runtime: RuntimeDep) -> Response[HealthOut]:
        checks = {"database": "ok", "signing_key": "ok"}
        try:
            # Bounded: a database that stopped answering must make this 503 quickly, not hang the probe.
            async with asyncio.timeout(READY_DATABASE_TIMEOUT_SECONDS), runtime.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception:
            checks["database"] = "unreachable"
        try:
            await runtime.revocation_watch.check()
            if runtime.signer.keyring().signer.signing_key is None:
                checks["signing_key"] = "retired: import the next key's bundle"
        except KeyringError:
            checks["signing_key"] = "unavailable"
        failing = runtime.job_health.failing()
        checks["jobs"] = "ok" if not failing else "; ".join(f"{job} {why}" for job, why in failing.items())
        ready = all(value == "ok" for value in checks.values())
        if runtime.signer.reload_error is not None:
            # Still signing with the last good keyring: worth a look, not a reason to take the replica out.
            checks["keyring"] = f"last good keyring in use; cannot re-read keys: {runtime.signer.reload_error}"

        return Response(
            HealthOut(status="ok" if ready else "unavailable", checks=checks),
            status_code=200 if ready else 503,
        )
