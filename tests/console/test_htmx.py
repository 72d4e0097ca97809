"""HTMX in the console: the license list loads its next keyset page in place, and an HTMX POST carries the session's
CSRF token in its header (set once on the page), so it passes the same check a form does."""

from __future__ import annotations

from datetime import timedelta

import pytest

from license_server.auth.tokens import Role, cli_actor
from license_server.licenses import service as licenses
from license_server.runtime import Runtime
from tests.console.conftest import PageFactory, Seeded, StaffFactory, sign_in

pytestmark = pytest.mark.browser


@pytest.fixture
def backend() -> str:
    """HTMX behaviour is the browser's and the markup's; SQLite is enough."""
    return "sqlite"


async def test_more_licenses_load_in_place_by_keyset(
    new_page: PageFactory, make_staff: StaffFactory, seeded: Seeded, runtime: Runtime
) -> None:
    async with runtime.session_factory() as db:
        for _ in range(54):  # 55 with the seeded one: a page of 50 and five more
            runtime.clock.advance(timedelta(seconds=1))  # type: ignore[attr-defined]  # the tests' MovableClock
            await licenses.issue_license(
                db,
                actor=cli_actor(),
                hasher=runtime.hasher,
                customer_id=seeded.customer_id,
                expires_at=runtime.clock() + timedelta(days=365),
                clock=runtime.clock,
            )
    page = await new_page()
    await sign_in(page, await make_staff(Role.VIEWER))
    await page.goto("/console/licenses")
    rows = page.locator("#license-rows tr")
    assert await rows.count() == 51  # 50 licenses and the "More licenses" row
    await page.get_by_role("link", name="More licenses").click()
    await page.wait_for_function("document.querySelectorAll('#license-rows tr').length === 55")
    assert page.url.endswith("/console/licenses")  # swapped in place, no navigation
    assert await page.get_by_role("link", name="More licenses").count() == 0  # the last page has no cursor


async def test_an_htmx_post_carries_the_csrf_header_and_is_accepted(
    new_page: PageFactory, make_staff: StaffFactory, seeded: Seeded, runtime: Runtime
) -> None:
    page = await new_page()
    await sign_in(page, await make_staff(Role.ADMIN))
    await page.goto(f"/console/licenses/{seeded.license_id}")
    await page.wait_for_function("window.htmx !== undefined")  # the vendored htmx, served by the console itself
    status = await page.evaluate(
        """(path) => new Promise((resolve) => {
            document.body.addEventListener("htmx:afterRequest", (e) => resolve(e.detail.xhr.status), {once: true});
            htmx.ajax("POST", path, {source: document.body, swap: "none"});
        })""",
        f"/console/licenses/{seeded.license_id}/suspend",
    )
    assert status == 200  # the 303 was followed to the license page
    async with runtime.session_factory() as db:
        view = await licenses.get_license(db, seeded.license_id, clock=runtime.clock)
    assert view.license.is_suspended
