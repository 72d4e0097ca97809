"""Portal fixtures: the app with the portal mounted, a client that keeps Secure cookies, a hosted account with usage,
a self-hosted customer with a license, and links for any role.

The app is the real one: ``create_app`` mounts the portal (``console.routing.console_routers``).
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pypdf
import pytest
from litestar import Litestar

from license_server.auth.tokens import Actor, Role
from license_server.billing.invoices import service as invoice_service
from license_server.licenses.terms import LicenseTerms
from license_server.runtime import Runtime
from tests.billing.conftest import Platform, PlatformFactory, make_platform, subscribe, tiny_plan
from tests.conftest import LicenseFactory, TokenFactory

__all__ = ["make_platform"]

APPS = "apps"  # total, limit 10
KNOWLEDGE_BASES = "knowledge_bases"  # total, limit 0: not available on the plan
MEMBERS = "members"  # total, unlimited
MESSAGES = "messages"  # monthly, limit 100
WORKSPACE = "ws-portal"
CSRF_INPUT = re.compile(r'name="_csrf" value="([0-9a-f]+)"')


@pytest.fixture
async def web(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client on https, so it keeps and sends the portal's Secure cookie; redirects not followed."""
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        yield client


@dataclass
class HostedAccount:
    platform: Platform
    external_id: str


def portal_catalogue(**billing: Any) -> Any:
    return tiny_plan(
        "pro",
        {
            APPS: {"kind": "total", "limit": 10},
            KNOWLEDGE_BASES: {"kind": "total", "limit": 0},
            MEMBERS: {"kind": "total", "limit": None},
            MESSAGES: {"kind": "monthly", "limit": 100},
        },
        price="59.00",
        rate_card={"llm:gpt": "0.5", "tool:search": "2"},
        **billing,
    )


@pytest.fixture
async def hosted(
    make_platform: PlatformFactory, runtime: Runtime, actor: Actor, client: httpx.AsyncClient
) -> HostedAccount:
    """An account on "pro" with 3 apps, 7 messages this period and two priced usage events."""
    platform = await make_platform(catalogues=(portal_catalogue(),))
    await subscribe(runtime, actor, platform, WORKSPACE, "pro")
    headers = platform.headers
    gauge = await client.put(platform.url(WORKSPACE, f"gauges/{APPS}"), headers=headers, json={"value": 3})
    assert gauge.status_code == 200, gauge.text
    consumed = await client.post(
        platform.url(WORKSPACE, "usage/consume"),
        headers=headers,
        json={"key": MESSAGES, "amount": 7, "idempotency_key": "m-1"},
    )
    assert consumed.status_code == 201, consumed.text
    events = await client.post(
        platform.url(WORKSPACE, "events"),
        headers=headers,
        json={
            "events": [
                {
                    "id": "run-1",
                    "agent": "support-bot",
                    "line_items": [
                        {"type": "llm", "name": "gpt", "quantity": 10},
                        {"type": "tool", "name": "search", "quantity": 1},
                    ],
                },
                {
                    "id": "run-2",
                    "agent": "sales-bot",
                    "line_items": [{"type": "storage", "name": "kb", "cost": "1.25"}],
                },
            ]
        },
    )
    assert events.status_code in (200, 201), events.text
    return HostedAccount(platform, WORKSPACE)


LinkFactory = Callable[..., Awaitable[str]]


@pytest.fixture
def account_link(client: httpx.AsyncClient, hosted: HostedAccount) -> LinkFactory:
    """A portal link for the hosted account, made by its platform; returns the link's path."""

    async def make(role: str = "owner", **body: Any) -> str:
        response = await client.post(
            hosted.platform.url(hosted.external_id, "portal-sessions"),
            headers=hosted.platform.headers,
            json={"role": role, **body},
        )
        assert response.status_code == 201, response.text
        return str(httpx.URL(response.json()["url"]).path)

    return make


@dataclass
class SelfHosted:
    customer_id: uuid.UUID
    license_id: uuid.UUID
    license_key: str


@pytest.fixture
async def self_hosted(make_license: LicenseFactory) -> SelfHosted:
    issued = await make_license(terms=LicenseTerms.model_validate({"max_activations": 3}))
    return SelfHosted(issued.view.license.customer_id, issued.view.license.id, issued.key)


@pytest.fixture
def customer_link(client: httpx.AsyncClient, make_token: TokenFactory, self_hosted: SelfHosted) -> LinkFactory:
    """A portal link for the self-hosted customer, made by vendor staff with an issuer token."""

    async def make(role: str = "owner") -> str:
        token = await make_token(Role.ISSUER)
        response = await client.post(
            f"/v1/admin/customers/{self_hosted.customer_id}/portal-sessions",
            headers={"Authorization": f"Bearer {token}"},
            json={"role": role},
        )
        assert response.status_code == 201, response.text
        return str(httpx.URL(response.json()["url"]).path)

    return make


async def open_link(web: httpx.AsyncClient, path: str) -> httpx.Response:
    """What a visitor does: open the link (the start page), press its button (spends the link, sets the cookie)."""
    page = await web.get(path)
    assert page.status_code == 200, page.text
    token = path.rsplit("/", 1)[1]
    return await web.post("/portal/start", data={"token": token})


async def signed_in(web: httpx.AsyncClient, path: str) -> httpx.AsyncClient:
    started = await open_link(web, path)
    assert started.status_code == 303, started.text
    return web


def csrf_of(html: str) -> str:
    match = CSRF_INPUT.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


async def issue_invoices(runtime: Runtime) -> int:
    """Issue every due invoice at the runtime's clock, as the scheduled job does."""
    async with runtime.session_factory() as session:
        return await invoice_service.issue_due_invoices(session, now=runtime.clock())


def pdf_text(content: bytes) -> str:
    assert content.startswith(b"%PDF-")
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(content)).pages)
