"""Console fixtures: the server on a real socket, the system Chromium driven by Playwright, signed-in staff.

Chromium comes from the system packages (``apt-get install chromium``) and is launched by ``executable_path``;
``playwright install`` is never run (it downloads a browser). Without /usr/bin/chromium the browser tests are
skipped with the reason, unless LICENSE_SERVER_REQUIRE_BROWSER=1 (CI) makes that a failure.

The portal's fixtures live in tests/console/portal/conftest.py and build on these (``live_server``, ``browser``,
``new_page``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import uvicorn
from litestar import Litestar

from license_server.auth.tokens import Role
from license_server.console import service as staff
from license_server.runtime import Runtime

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
REQUIRE_BROWSER = os.environ.get("LICENSE_SERVER_REQUIRE_BROWSER") == "1"
AXE_SCRIPT = Path(__file__).parents[2] / "license_server" / "console" / "static" / "vendor" / "axe-4.14.1.min.js"


def browser_unavailable_reason() -> str | None:
    if not os.access(CHROMIUM, os.X_OK):
        return f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.async_api  # noqa: F401
    except ImportError as exc:
        return f"the playwright package is not installed ({exc})"
    return None


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    reason = browser_unavailable_reason()
    if reason:
        if REQUIRE_BROWSER:
            pytest.fail(f"{reason}; LICENSE_SERVER_REQUIRE_BROWSER=1 forbids skipping", pytrace=False)
        print(f"\nSKIPPING browser tests: {reason}")
        pytest.skip(reason)
    return CHROMIUM


@contextlib.asynccontextmanager
async def serving(app: Litestar) -> AsyncIterator[str]:
    """The app on 127.0.0.1 and a free port, served in the caller's event loop (so it shares the runtime's pool)."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # the server failed to start: raise its error
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def live_server(app: Litestar) -> AsyncIterator[str]:
    async with serving(app) as base_url:
        yield base_url


@pytest.fixture
async def browser(chromium_path: Path) -> AsyncIterator[Browser]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(chromium_path), headless=True)
        try:
            yield launched
        finally:
            await launched.close()


PageFactory = Callable[[], Awaitable["Page"]]


@pytest.fixture
def new_page(browser: Browser, live_server: str) -> PageFactory:
    """A fresh browser context (its own cookies) on the live server; pages resolve relative URLs against it."""

    async def make() -> Page:
        context = await browser.new_context(base_url=live_server)
        context.set_default_timeout(10_000)
        return await context.new_page()

    return make


async def axe_violations(page: Page, *, impacts: frozenset[str] = frozenset({"serious", "critical"})) -> list[str]:
    """Run the vendored axe-core on the page; the violations of the given impacts, one line each.

    Loaded from the console's own static files: the pages' Content-Security-Policy refuses inline scripts."""
    await page.add_script_tag(url=f"/console/static/vendor/{AXE_SCRIPT.name}")
    results = await page.evaluate("async () => (await axe.run(document)).violations")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results
        if v["impact"] in impacts
    ]


# -- staff -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StaffLogin:
    email: str
    password: str
    role: Role


StaffFactory = Callable[[Role], Awaitable[StaffLogin]]


@pytest.fixture
def make_staff(runtime: Runtime) -> StaffFactory:
    async def make(role: Role) -> StaffLogin:
        email = f"{role.value}-{secrets.token_hex(3)}@vendor.example"
        password = f"pw-{secrets.token_urlsafe(12)}"
        async with runtime.session_factory() as db:
            await staff.create_staff_user(db, email=email, password=password, role=role, clock=runtime.clock)
        return StaffLogin(email=email, password=password, role=role)

    return make


async def sign_in(page: Page, login: StaffLogin) -> None:
    await page.goto("/console/sign-in")
    await page.get_by_label("Email").fill(login.email)
    await page.get_by_label("Password").fill(login.password)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/console")


async def http_sign_in(client: httpx.AsyncClient, login: StaffLogin) -> str:
    """Sign in over HTTP (no browser); the client keeps the session cookie. Returns the session's CSRF token."""
    form = await client.get("/console/sign-in")
    token = form.text.split('name="_csrf" value="', 1)[1].split('"', 1)[0]
    response = await client.post(
        "/console/sign-in", data={"email": login.email, "password": login.password, "_csrf": token}
    )
    assert response.status_code == 303, response.text
    page = await client.get("/console")
    return page.text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]


@pytest.fixture
async def console_client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on http://127.0.0.1, where the console's cookies are not Secure (see console.sessions)."""
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        yield client


# -- seeded data -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Seeded:
    """One of each thing the console's pages show: a customer with a license, a billing account, a delivery."""

    customer_id: uuid.UUID
    license_id: uuid.UUID
    license_key: str
    platform_id: uuid.UUID
    external_id: str
    plan_code: str

    @property
    def account_path(self) -> str:
        return f"/console/billing/platforms/{self.platform_id}/accounts/{self.external_id}"


async def seed_console_data(runtime: Runtime, *, customer_name: str = "Acme Corp") -> Seeded:
    from datetime import timedelta

    from license_server.auth.tokens import cli_actor
    from license_server.billing.accounts import service as accounts
    from license_server.billing.plans import service as plans
    from license_server.licenses import service as licenses
    from license_server.licenses.terms import LicenseTerms

    actor = cli_actor()
    async with runtime.session_factory() as db:
        customer = await licenses.create_customer(
            db, actor=actor, name=customer_name, contact_email="it@acme.example", clock=runtime.clock
        )
        customer_id = customer.id
        issued = await licenses.issue_license(
            db,
            actor=actor,
            hasher=runtime.hasher,
            customer_id=customer_id,
            expires_at=runtime.clock() + timedelta(days=20),
            terms=LicenseTerms.model_validate({"max_activations": 3}),
            clock=runtime.clock,
        )
        catalogue = plans.Catalogue.model_validate(
            {
                "plans": [
                    {
                        "code": "team",
                        "name": "Team",
                        "billing": {
                            "price": "20.00",
                            "quotas": {
                                "members": {"kind": "total", "limit": 5},
                                "messages": {"kind": "monthly", "limit": 1000},
                            },
                        },
                    }
                ]
            }
        )
        await plans.import_catalogue(db, actor=actor, catalogue=catalogue, clock=runtime.clock)
        platform = await accounts.create_platform(
            db, actor=actor, hasher=runtime.hasher, name="Acme Cloud", default_plan=None, clock=runtime.clock
        )
        platform_id = platform.platform.id
        await accounts.create_subscription(
            db, actor=actor, platform_id=platform_id, external_id="ws-1", plan="team", clock=runtime.clock
        )
    return Seeded(
        customer_id=customer_id,
        license_id=issued.view.license.id,
        license_key=issued.key,
        platform_id=platform_id,
        external_id="ws-1",
        plan_code="team",
    )


@pytest.fixture
async def seeded(runtime: Runtime) -> Seeded:
    return await seed_console_data(runtime)
