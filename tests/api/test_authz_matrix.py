"""Every admin route declares its permission; each is refused without a token (401) and to weaker roles (403)."""

from __future__ import annotations

import re

import httpx
import pytest
from litestar import Litestar

from license_server.app import ADMIN_PREFIX
from license_server.auth.guards import PERMISSION_OPT
from license_server.auth.tokens import ROLE_PERMISSIONS, Permission, Role
from tests.conftest import TokenFactory

SAMPLE_PATH_VALUES = {"uuid": "00000000-0000-4000-8000-000000000000", "str": "sample"}


@pytest.fixture
def backend() -> str:
    """Authorisation does not depend on storage; SQLite is enough here."""
    return "sqlite"


def admin_routes(app: Litestar) -> list[tuple[str, str, Permission | None]]:
    routes = []
    for route in app.routes:
        if not route.path.startswith(ADMIN_PREFIX):
            continue
        for handler in getattr(route, "route_handlers", []):
            for method in sorted(handler.http_methods - {"OPTIONS", "HEAD"}):
                routes.append((method, route.path, handler.opt.get(PERMISSION_OPT)))
    return routes


def concrete(path: str) -> str:
    """Fill path parameters (``{name:type}``) with values of their declared type."""
    return re.sub(r"\{\w+:(\w+)\}", lambda m: SAMPLE_PATH_VALUES.get(m.group(1), "sample"), path)


async def test_every_admin_route_declares_a_permission(app: Litestar, client: httpx.AsyncClient) -> None:
    routes = admin_routes(app)
    assert len(routes) >= 20
    undeclared = [(method, path) for method, path, permission in routes if not isinstance(permission, Permission)]
    assert undeclared == []


async def test_every_admin_route_refuses_missing_and_unknown_tokens(app: Litestar, client: httpx.AsyncClient) -> None:
    for method, path_format, _ in admin_routes(app):
        path = concrete(path_format)
        for headers in (
            {},
            {"Authorization": "Bearer lsat_not-a-real-token"},
            {"Authorization": "Basic abc"},
        ):
            response = await client.request(method, path, headers=headers, json={})
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.json()["code"] == "authentication_required"


async def test_every_admin_route_refuses_roles_without_its_permission(
    app: Litestar, client: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    tokens = {role: await make_token(role) for role in Role}
    checked = 0
    for method, path_format, permission in admin_routes(app):
        assert isinstance(permission, Permission)
        path = concrete(path_format)
        for role, token in tokens.items():
            response = await client.request(method, path, headers={"Authorization": f"Bearer {token}"}, json={})
            if permission in ROLE_PERMISSIONS[role]:
                assert response.status_code not in (401, 403), (method, path, role, response.text)
            else:
                assert response.status_code == 403, (method, path, role, response.text)
                assert response.json()["code"] == "permission_denied"
                checked += 1
    assert checked > 40


async def test_a_revoked_token_is_refused(client: httpx.AsyncClient, make_token: TokenFactory) -> None:
    owner = {"Authorization": f"Bearer {await make_token(Role.OWNER)}"}
    viewer_token = await make_token(Role.VIEWER)
    viewer = {"Authorization": f"Bearer {viewer_token}"}
    assert (await client.get("/v1/admin/customers", headers=viewer)).status_code == 200
    tokens = (await client.get("/v1/admin/tokens", headers=owner)).json()
    viewer_id = next(t["id"] for t in tokens if t["role"] == "viewer")
    assert (await client.delete(f"/v1/admin/tokens/{viewer_id}", headers=owner)).status_code == 200
    assert (await client.get("/v1/admin/customers", headers=viewer)).status_code == 401


def test_role_permissions_match_the_documented_roles() -> None:
    assert ROLE_PERMISSIONS[Role.OWNER] == frozenset(Permission)
    assert Permission.MANAGE_KEYS not in ROLE_PERMISSIONS[Role.ADMIN]
    assert Permission.MANAGE_TOKENS not in ROLE_PERMISSIONS[Role.ADMIN]
    assert ROLE_PERMISSIONS[Role.ISSUER] == {Permission.READ, Permission.ISSUE_LICENSES}
    assert not any(p.value.startswith("manage") for p in ROLE_PERMISSIONS[Role.VIEWER])
    assert ROLE_PERMISSIONS[Role.BILLING] == {Permission.READ_USAGE, Permission.BILLING_READ, Permission.BILLING_WRITE}
    # Seed 002: only owner, admin and billing:read see billing; viewers and issuers do not.
    assert Permission.BILLING_READ not in ROLE_PERMISSIONS[Role.VIEWER] | ROLE_PERMISSIONS[Role.ISSUER]
