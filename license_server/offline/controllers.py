"""The offline admin API: answer activation requests, renew license files, import usage reports."""

from __future__ import annotations

from litestar import Controller, Response, post
from litestar.params import JSONBody

from license_server.auth.guards import CurrentActor, needs
from license_server.auth.tokens import Permission
from license_server.dependencies import Db, RuntimeDep
from license_server.deployments.schemas import UsageOut
from license_server.offline import files, service
from license_server.offline.schemas import (
    LicenseFileOut,
    OfflineRenewalIn,
    OfflineRequestIn,
    OfflineUsageIn,
    UsageImportedOut,
)
from license_server.schemas_common import problem_spec


def _file_out(issued: service.IssuedLicenseFile) -> LicenseFileOut:
    return LicenseFileOut(
        license_file=issued.text,
        license_id=issued.license_id,
        activation_id=issued.activation_id,
        created=issued.created,
        expires_at=issued.expires_at,
    )


class OfflineController(Controller):
    path = "/v1/admin/offline"
    tags = ["offline"]

    @post(
        "/responses",
        opt=needs(Permission.ISSUE_LICENSES),
        summary="Answer an air-gapped install's activation request with a license file",
        description="Counts as an activation (seat limits apply): 201 with a new activation, 200 when the install "
        "already holds one. Refusals carry code offline_<REASON> (e.g. offline_bad_signature).",
        responses={404: problem_spec("No license matches the request's key")},
    )
    async def respond(
        self, data: JSONBody[OfflineRequestIn], db: Db, actor: CurrentActor, runtime: RuntimeDep
    ) -> Response[LicenseFileOut]:
        issued = await service.respond(
            db, runtime=runtime, actor=actor, request=files.canonical_json(data.request), clock=runtime.clock
        )
        return Response(_file_out(issued), status_code=201 if issued.created else 200)

    @post(
        "/renewals",
        opt=needs(Permission.ISSUE_LICENSES),
        status_code=200,
        summary="A new license file for the binding of an earlier one: current terms, no new activation",
        responses={404: problem_spec("No offline activation matches the file")},
    )
    async def renew(
        self, data: JSONBody[OfflineRenewalIn], db: Db, actor: CurrentActor, runtime: RuntimeDep
    ) -> LicenseFileOut:
        issued = await service.renew(
            db, runtime=runtime, actor=actor, license_file=data.license_file, clock=runtime.clock
        )
        return _file_out(issued)

    @post(
        "/usage-reports",
        opt=needs(Permission.ISSUE_LICENSES),
        status_code=200,
        summary="Import an install's usage report (the next link of its signed, hash-chained reports)",
        description="Idempotent: the same file again answers what its import answered. Refused with "
        "offline_usage_replayed (another report took this link), offline_usage_chain_gap, "
        "offline_usage_chain_broken (409), offline_unknown_binding (404), offline_bad_signature or "
        "offline_malformed (400).",
    )
    async def import_usage(
        self, data: JSONBody[OfflineUsageIn], db: Db, actor: CurrentActor, runtime: RuntimeDep
    ) -> UsageImportedOut:
        imported = await service.import_usage(
            db, runtime=runtime, actor=actor, report=files.canonical_json(data.report), clock=runtime.clock
        )
        usage = imported.usage
        return UsageImportedOut(
            license_id=imported.license_id,
            activation_id=imported.activation_id,
            seq=imported.seq,
            measurements=imported.measurements,
            usage=UsageOut(
                workspaces=usage.workspaces,
                members_per_workspace=usage.members_per_workspace,
                licensed_seats=usage.licensed_seats,
            ),
            over_limit=imported.over_limits,
        )
