"""The edge app: the deployment API (``/v1/license``, ``/v1/usage``), Dify's ``/inner/api`` and health, served
from one license file.

``create_edge_app`` takes extra route handlers and dependencies, so a feature can be mounted on the edge (the inner
API) with the same ``edge`` dependency, the same local database (``edge_db``) and ``edge_license_state``.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Annotated, Any

from litestar import Controller, Litestar, Response, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.params import HeaderParameter, JSONBody
from litestar.types import ControllerRouterHandler
from sqlalchemy.ext.asyncio import AsyncSession

import license_server
from license_server.auth.guards import bearer_secret
from license_server.config import Settings
from license_server.deployments.controllers import LICENSE_DOCUMENT_MEDIA_TYPE
from license_server.deployments.schemas import UsageAccepted, UsageOut, UsageReportIn
from license_server.edge import service
from license_server.edge.inner_store import EdgeInnerApiStore
from license_server.edge.runtime import EdgeRuntime, edge_license_state
from license_server.errors import AuthenticationRequired
from license_server.health.controllers import HealthOut
from license_server.http_wiring import EXCEPTION_HANDLERS, MAX_REQUEST_BODY_BYTES, metrics_route, observe_requests
from license_server.inner_api.controllers import STORE_STATE_KEY, InnerApiController
from license_server.inner_api.store import InnerApiStore
from license_server.json_bodies import document_body_rules, enforce_json_bodies
from license_server.metrics import serve_metrics_port, watch_pool
from license_server.openapi import StrictPydanticSchemaPlugin, document_problem_examples
from license_server.schemas_common import problem_spec
from license_server.validation import FieldStrictPydanticInitPlugin

EdgeDep = NamedDependency[EdgeRuntime]
EdgeDb = NamedDependency[AsyncSession]


async def require_edge_token(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """With an edge token configured, the deployment API needs it as a bearer token."""
    edge: EdgeRuntime = connection.app.state.edge
    if edge.token is None:
        return
    secret = bearer_secret(connection) or ""
    if not hmac.compare_digest(secret.encode(), edge.token.encode()):
        raise AuthenticationRequired("send Authorization: Bearer <edge token>")


class EdgeDeploymentController(Controller):
    path = "/v1"
    tags = ["edge"]
    guards = [require_edge_token]

    @get(
        "/license",
        media_type=LICENSE_DOCUMENT_MEDIA_TYPE,
        summary="The license file's signed document; its status now in License-Status / License-Status-Reason",
        responses={304: ResponseSpec(None, description="The document is unchanged")},
    )
    async def license(
        self, edge: EdgeDep, if_none_match: Annotated[str | None, HeaderParameter(name="If-None-Match")] = None
    ) -> Response[str]:
        state = await edge_license_state(edge)
        headers = {
            "ETag": state.etag,
            "Cache-Control": "no-store",
            "License-Status": state.status.status.value,
            "License-Status-Reason": state.status.reason.value,
        }
        if if_none_match is not None and state.etag in {tag.strip() for tag in if_none_match.split(",")}:
            return Response("", status_code=304, headers=headers, media_type=LICENSE_DOCUMENT_MEDIA_TYPE)
        return Response(state.token, headers=headers, media_type=LICENSE_DOCUMENT_MEDIA_TYPE)

    @post(
        "/usage",
        status_code=200,
        summary="Record usage locally (idempotent per idempotency_key); exported by `offline usage-report`",
        responses={401: problem_spec("An edge token is configured and was not sent")},
    )
    async def usage(self, data: JSONBody[UsageReportIn], edge: EdgeDep, edge_db: EdgeDb) -> UsageAccepted:
        recorded = await service.record_usage(
            edge_db,
            measured_at=data.measured_at,
            workspaces=[(w.id, w.members) for w in data.workspaces],
            seats_used=data.seats_used,
            idempotency_key=data.idempotency_key,
            now=edge.clock(),
        )
        state = await edge_license_state(edge)
        usage = recorded.usage
        return UsageAccepted(
            report_id=recorded.report_id,
            duplicate=recorded.duplicate,
            over_limit=usage.over_limits(state.claims),
            usage=UsageOut(
                workspaces=usage.workspaces,
                members_per_workspace=usage.members_per_workspace,
                licensed_seats=usage.licensed_seats,
            ),
        )


class EdgeHealthController(Controller):
    path = "/health"
    tags = ["health"]

    @get("/live", summary="The process is running")
    async def live(self) -> HealthOut:
        return HealthOut(status="ok", checks={})

    @get(
        "/ready",
        summary="Local database reachable and a verified license file loaded",
        responses={503: ResponseSpec(data_container=HealthOut, description="Not ready; checks say why")},
    )
    async def ready(self, edge: EdgeDep) -> Response[HealthOut]:
        checks = {"database": "ok" if await edge.database_ok() else "unreachable", "license_file": "ok"}
        await edge.reload_if_changed()
        if edge.file_error is not None:
            # Still serving the previous verified file; the operator should see why the new one was refused.
            checks["license_file"] = f"previous file in service; new file refused: {edge.file_error}"
        if edge.retired_file is not None:
            checks["license_file"] = f"refused: {edge.retired_file}"
        if edge.revocations_error is not None:
            checks["revocations"] = f"offered list refused: {edge.revocations_error}"
        ready = checks["database"] == "ok" and edge.retired_file is None
        return Response(
            HealthOut(status="ok" if ready else "unavailable", checks=checks), status_code=200 if ready else 503
        )


def create_edge_app(
    edge: EdgeRuntime,
    *,
    route_handlers: Sequence[ControllerRouterHandler] = (),
    dependencies: Mapping[str, Provide] | None = None,
    settings: Settings | None = None,
) -> Litestar:
    """The edge app. ``edge.start()`` runs on startup (the file is verified again there); ``close`` on shutdown.

    ``settings`` (the environment's by default) say how metrics are exposed (``metrics_token``, ``metrics_port``)
    and whether requests are logged."""
    config = settings or Settings()
    watch_pool(edge.engine.sync_engine.pool)

    def provide_edge() -> EdgeRuntime:
        return edge

    async def provide_edge_db() -> AsyncIterator[AsyncSession]:
        async with edge.session_factory() as session:
            yield session

    async def close_edge() -> None:
        await edge.close()

    async def start_metrics_port() -> None:
        if config.metrics_port is not None:
            serve_metrics_port(config.metrics_host, config.metrics_port)

    # Dify's /inner/api: the one inner-API service over the license file and edge.db (docs/inner-api.md).
    inner_store: InnerApiStore = EdgeInnerApiStore(edge)
    app = Litestar(
        route_handlers=[
            EdgeDeploymentController,
            EdgeHealthController,
            InnerApiController,
            metrics_route(config),
            *route_handlers,
        ],
        dependencies={
            "edge": Provide(provide_edge, sync_to_thread=False),
            "edge_db": Provide(provide_edge_db),
            **(dependencies or {}),
        },
        # The vendor app's input rules, whole: one error mapping, JSON bodies only (bounded, no duplicate keys), strict
        # fields kept strict.
        exception_handlers=dict(EXCEPTION_HANDLERS),
        before_request=enforce_json_bodies,
        plugins=[StrictPydanticSchemaPlugin(), FieldStrictPydanticInitPlugin()],
        on_startup=[edge.start, start_metrics_port],
        on_shutdown=[close_edge],
        request_max_body_size=MAX_REQUEST_BODY_BYTES,
        openapi_config=OpenAPIConfig(
            title="License Server edge", version=license_server.__version__, path="/schema", render_plugins=[]
        ),
        state=State({"edge": edge, STORE_STATE_KEY: inner_store}),
        # The process configures logging (license_server.logs); Litestar must not reset the root logger.
        logging_config=None,
        debug=False,
    )
    document_body_rules(app)
    document_problem_examples(app)
    observe_requests(app, app_name="edge", settings=config)
    return app
