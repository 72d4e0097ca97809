"""Every admin route declares the permission it needs in its ``opt``; one guard enforces it.

A route that declares nothing is refused (fail closed), and a test walks every admin route to check both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers.base import BaseRouteHandler

from license_server.auth.throttle import CredentialKind, record_failed_auth, refuse_if_guessing
from license_server.auth.tokens import Actor, Permission, authenticate
from license_server.errors import AuthenticationRequired, PermissionDenied

if TYPE_CHECKING:  # the runtime sits above auth (it builds the deployments' writer); only its type is needed here
    from license_server.runtime import Runtime

PERMISSION_OPT = "permission"
# The actor ``authorize`` authenticated, injected into admin handlers as ``actor`` (``provide_actor``).
CurrentActor = NamedDependency[Actor]


def needs(permission: Permission) -> dict[str, Any]:
    return {PERMISSION_OPT: permission}


def bearer_secret(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    scheme, _, secret = connection.headers.get("authorization", "").partition(" ")
    secret = secret.strip()
    return secret if scheme.lower() == "bearer" and secret else None


async def authorize(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    secret = bearer_secret(connection)
    if secret is None:
        raise AuthenticationRequired("send Authorization: Bearer <admin token>")
    runtime: Runtime = connection.app.state.runtime
    limiter_key = refuse_if_guessing(
        runtime, connection.client.host if connection.client else None, CredentialKind.ADMIN_TOKEN
    )
    async with runtime.session_factory() as session:
        actor = await authenticate(session, hasher=runtime.hasher, secret=secret, clock=runtime.clock)
    if actor is None:
        await record_failed_auth(runtime, limiter_key, secret)
        raise AuthenticationRequired("the bearer token is unknown or revoked")
    permission = handler.opt.get(PERMISSION_OPT)
    if not isinstance(permission, Permission) or not actor.can(permission):
        raise PermissionDenied(f"role {actor.role.value} may not {permission or 'use this route'}")
    connection.state.actor = actor


def provide_actor(request: Request[Any, Any, Any]) -> Actor:
    actor: Actor = request.state.actor
    return actor
