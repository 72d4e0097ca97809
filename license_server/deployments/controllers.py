"""The deployment API (/v1), the admin views of activations and usage, and the vendor's document download."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from litestar import Controller, Request, Response, delete, get, post
from litestar.enums import ParamType
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIType, Operation, Parameter, Schema
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response.base import ASGIResponse

from license_server.auth.guards import CurrentActor, authorize, bearer_secret, needs
from license_server.auth.tokens import TOKEN_PREFIX, Permission
from license_server.dependencies import Db, Limit, Offset, RuntimeDep
from license_server.deployments import service
from license_server.deployments.models import Activation
from license_server.deployments.schemas import (
    ActivateRequest,
    ActivationCreated,
    ActivationOut,
    DeactivatedOut,
    UsageAccepted,
    UsageOut,
    UsageReportIn,
    ValidateRequest,
    ValidationOut,
)
from license_server.deployments.service import WorkspaceUsage
from license_server.deployments.usage import usage_summary
from license_server.deployments.views import activation_out, list_activations
from license_server.schemas_common import Page, problem_spec

if TYPE_CHECKING:
    from license_server.runtime import Runtime

LICENSE_DOCUMENT_MEDIA_TYPE = "application/jwt"
ActivationState = Literal["live", "lost", "deactivated"]


def _client_address(request: Request[Any, Any, Any]) -> str | None:
    return request.client.host if request.client else None


@dataclass
class _PollOperation(Operation):
    """The poll route reads If-None-Match itself (no per-request parameter parsing); the schema still documents it."""

    def __post_init__(self) -> None:
        header = Parameter(
            name="If-None-Match",
            param_in=ParamType.HEADER,
            schema=Schema(type=OpenAPIType.STRING),
            description="The ETag of the document the deployment holds: 304 when it is still current",
        )
        self.parameters = [*(self.parameters or []), header]


class DeploymentController(Controller):
    path = "/v1"
    tags = ["deployments"]

    @post(
        "/activations",
        summary="Activate a deployment with its license key and fingerprint",
        description="201 with a new activation, or 200 with the existing one for the same fingerprint (no second "
        "seat). Rate-limited per client address and per license key.",
        responses={
            200: ResponseSpec(ActivationCreated, description="An existing activation for this fingerprint"),
            403: problem_spec("Revoked, suspended, not started, or expired under enforcement 'restrict'"),
            404: problem_spec("No license matches this key (unknown and malformed keys alike)"),
            409: problem_spec("All of the license's activations are in use (too_many_activations)"),
            429: problem_spec("Rate limited; see Retry-After"),
        },
    )
    async def activate(
        self, request: Request[Any, Any, Any], data: JSONBody[ActivateRequest], runtime: RuntimeDep
    ) -> Response[ActivationCreated]:
        await service.check_rate_limits(runtime, address=_client_address(request), license_key=data.license_key)
        result = await service.activate(
            None,  # the service runs its own transaction (on SQLite, batched with concurrent activations)
            runtime=runtime,
            license_key=data.license_key,
            fingerprint=data.fingerprint,
            hostname=data.hostname,
            product_version=data.product_version,
            metadata=data.metadata,
            reissue_token=data.reissue_token,
            clock=runtime.clock,
        )
        body = ActivationCreated(
            activation_id=result.activation.id, deployment_token=result.token, document=result.document.token
        )
        return Response(body, status_code=201 if result.created else 200, headers={"ETag": result.document.etag})

    @get(
        "/license",
        media_type=LICENSE_DOCUMENT_MEDIA_TYPE,
        summary="Poll for the signed license document (a check-in)",
        description="Send the deployment token as a bearer token and the last ETag as If-None-Match: 304 when "
        "nothing changed.",
        operation_class=_PollOperation,
        responses={
            200: ResponseSpec(
                str, media_type=LICENSE_DOCUMENT_MEDIA_TYPE, description="The signed license document (a compact JWS)"
            ),
            304: ResponseSpec(None, description="The document is unchanged"),
            401: problem_spec("Missing, unknown or deactivated deployment token"),
            429: problem_spec("Too many failed authentications from this address; see Retry-After"),
        },
    )
    async def poll(self, request: Request[Any, Any, Any]) -> ASGIResponse:
        # The hot path: the runtime comes from app state rather than a dependency, the one header is read directly,
        # and the answer is a ready ASGI response, so the framework adds as little as possible per poll.
        runtime: Runtime = request.app.state.runtime
        if_none_match = request.headers.get("if-none-match")
        result = await service.poll(
            runtime, token=bearer_secret(request), if_none_match=if_none_match, address=_client_address(request)
        )
        headers = {"ETag": result.document.etag, "Cache-Control": "no-store"}
        if result.not_modified:
            return ASGIResponse(status_code=304, headers=headers, media_type=LICENSE_DOCUMENT_MEDIA_TYPE)
        return ASGIResponse(body=result.document.token, headers=headers, media_type=LICENSE_DOCUMENT_MEDIA_TYPE)

    @post(
        "/licenses/validate",
        status_code=200,
        summary="Validate a license key (and fingerprint) with a nonce; the answer is signed",
        responses={429: problem_spec("Rate limited; see Retry-After")},
    )
    async def validate(
        self, request: Request[Any, Any, Any], data: JSONBody[ValidateRequest], db: Db, runtime: RuntimeDep
    ) -> ValidationOut:
        await service.check_rate_limits(runtime, address=_client_address(request), license_key=data.license_key)
        outcome = await service.validate(
            db,
            runtime=runtime,
            license_key=data.license_key,
            nonce=data.nonce,
            fingerprint=data.fingerprint,
            clock=runtime.clock,
        )
        return ValidationOut(
            valid=outcome.valid,
            code=outcome.code,
            detail=outcome.detail,
            status=outcome.status,
            license_id=outcome.license_id,
            fingerprint=outcome.fingerprint,
            nonce=outcome.nonce,
            ts=outcome.ts,
            signed=outcome.signed,
        )

    @post(
        "/usage",
        status_code=200,
        summary="Report usage (deployment token); idempotent per idempotency_key",
        responses={
            401: problem_spec("Missing, unknown or deactivated deployment token"),
            429: problem_spec("Too many failed authentications from this address; see Retry-After"),
        },
    )
    async def usage(
        self, request: Request[Any, Any, Any], data: JSONBody[UsageReportIn], db: Db, runtime: RuntimeDep
    ) -> UsageAccepted:
        activation = await service.authenticate_deployment(
            runtime, bearer_secret(request), address=_client_address(request)
        )
        outcome = await service.report_usage(
            db,
            runtime=runtime,
            activation=activation,
            measured_at=data.measured_at,
            workspaces=[WorkspaceUsage(w.id, w.members) for w in data.workspaces],
            seats_used=data.seats_used,
            idempotency_key=data.idempotency_key,
            clock=runtime.clock,
        )
        usage = outcome.usage
        return UsageAccepted(
            report_id=outcome.report_id,
            duplicate=outcome.duplicate,
            over_limit=outcome.over_limits,
            usage=UsageOut(
                workspaces=usage.workspaces,
                members_per_workspace=usage.members_per_workspace,
                licensed_seats=usage.licensed_seats,
            ),
        )

    @delete(
        "/activations/{activation_id:uuid}",
        status_code=200,
        summary="Deactivate: free the seat (the deployment's own token, or an admin token)",
        responses={
            401: problem_spec("Missing or unknown token"),
            403: problem_spec("Another deployment's activation, or an admin role without manage_licenses"),
            404: problem_spec("No such activation"),
            429: problem_spec("Too many failed authentications from this address; see Retry-After"),
        },
        opt=needs(Permission.MANAGE_LICENSES),
    )
    async def deactivate(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        runtime: RuntimeDep,
        activation_id: FromPath[uuid.UUID],
    ) -> DeactivatedOut:
        secret = bearer_secret(request)
        if secret is not None and secret.startswith(TOKEN_PREFIX):
            await authorize(request, request.route_handler)  # admins need manage_licenses
            by, own = str(request.state.actor.name), None
        else:
            own = await service.authenticate_deployment(runtime, secret, address=_client_address(request))
            by = f"deployment:{own.id}"
        activation = await service.deactivate(
            db, runtime=runtime, activation_id=activation_id, by=by, own_activation=own, clock=runtime.clock
        )
        assert activation.deactivated_at is not None
        return DeactivatedOut(activation_id=activation.id, deactivated_at=activation.deactivated_at)


class LicenseDocumentController(Controller):
    """A license's signed document for the vendor. Here rather than in licenses: it carries the deployments' usage."""

    path = "/v1/admin/licenses"
    tags = ["licenses"]

    @get(
        "/{license_id:uuid}/document",
        opt=needs(Permission.ISSUE_LICENSES),
        media_type=LICENSE_DOCUMENT_MEDIA_TYPE,
        summary="Download the signed license document (JWS compact serialization)",
    )
    async def document(self, db: Db, runtime: RuntimeDep, license_id: FromPath[uuid.UUID]) -> Response[str]:
        token = await service.license_document(
            db,
            signer=runtime.signer,
            issuer=runtime.settings.issuer,
            license_id=license_id,
            ttl=runtime.settings.document_ttl,
            clock=runtime.clock,
        )
        return Response(token, media_type=LICENSE_DOCUMENT_MEDIA_TYPE, headers={"Cache-Control": "no-store"})


class AdminActivationController(Controller):
    path = "/v1/admin"
    tags = ["activations"]

    @get(
        "/licenses/{license_id:uuid}/activations",
        opt=needs(Permission.READ),
        summary="A license's activations with fingerprint, host, version, first/last seen and latest usage",
    )
    async def for_license(
        self,
        db: Db,
        license_id: FromPath[uuid.UUID],
        activation_state: Annotated[ActivationState | None, QueryParameter(name="state")] = None,
    ) -> list[ActivationOut]:
        items, _ = await list_activations(db, license_id=license_id, state=activation_state)
        return items

    @get(
        "/activations",
        opt=needs(Permission.READ),
        summary="Activations across licenses, e.g. state=lost for deployments that have gone quiet",
    )
    async def list_(
        self,
        db: Db,
        activation_state: Annotated[ActivationState | None, QueryParameter(name="state")] = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> Page[ActivationOut]:
        items, total = await list_activations(db, license_id=None, state=activation_state, limit=limit, offset=offset)
        return Page(items=items, total=total, limit=limit, offset=offset)

    @post(
        "/activations/{activation_id:uuid}/deactivate",
        opt=needs(Permission.MANAGE_LICENSES),
        status_code=200,
        summary="Deactivate an activation, freeing its seat",
    )
    async def deactivate(
        self, db: Db, actor: CurrentActor, runtime: RuntimeDep, activation_id: FromPath[uuid.UUID]
    ) -> ActivationOut:
        activation: Activation = await service.deactivate(
            db, runtime=runtime, activation_id=activation_id, by=actor.name, clock=runtime.clock
        )
        return activation_out(activation, None)

    @get(
        "/licenses/{license_id:uuid}/usage",
        opt=needs(Permission.READ_USAGE),
        summary="A license's current usage across its deployments",
    )
    async def usage(self, db: Db, license_id: FromPath[uuid.UUID]) -> UsageOut:
        summary = await usage_summary(db, license_id)
        return UsageOut(
            workspaces=summary.workspaces,
            members_per_workspace=summary.members_per_workspace,
            licensed_seats=summary.licensed_seats,
        )
