"""axe-core (vendored, run in Chromium) finds no serious or critical violation on any main console page, and the
pages work with the keyboard alone."""

from __future__ import annotations

import pytest

from license_server.auth.tokens import Role
from tests.console.conftest import PageFactory, Seeded, StaffFactory, axe_violations, sign_in

pytestmark = pytest.mark.browser


@pytest.fixture
def backend() -> str:
    """What axe checks is markup, the same on either database."""
    return "sqlite"


def main_pages(seeded: Seeded) -> list[str]:
    return [
        "/console",
        "/console/customers?q=acme",
        f"/console/customers/{seeded.customer_id}",
        "/console/licenses",
        "/console/licenses/new",
        f"/console/licenses/{seeded.license_id}",
        "/console/offline",
        "/console/plans",
        "/console/billing/plans",
        "/console/billing/accounts",
        seeded.account_path,
        "/console/webhooks",
        "/console/audit",
    ]


async def test_no_serious_or_critical_axe_violation_on_any_main_page(
    new_page: PageFactory, make_staff: StaffFactory, seeded: Seeded
) -> None:
    page = await new_page()
    await page.goto("/console/sign-in")
    found = {"/console/sign-in": await axe_violations(page)}
    await sign_in(page, await make_staff(Role.OWNER))
    for path in main_pages(seeded):
        response = await page.goto(path)
        assert response is not None
        assert response.status == 200, path
        found[path] = await axe_violations(page)
    missing = await page.goto("/console/licenses/00000000-0000-4000-8000-000000000000")  # an error page too
    assert missing is not None
    assert missing.status == 404
    assert "license_not_found" in await page.content()  # the API's problem code, in words
    found["error page"] = await axe_violations(page)
    assert {path: v for path, v in found.items() if v} == {}


async def test_signing_in_and_suspending_a_license_needs_only_the_keyboard(
    new_page: PageFactory, make_staff: StaffFactory, seeded: Seeded
) -> None:
    login = await make_staff(Role.ADMIN)
    page = await new_page()
    await page.goto("/console/sign-in")
    await page.keyboard.press("Tab")  # the skip link comes first
    assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
    await page.keyboard.press("Tab")
    await page.keyboard.type(login.email)
    await page.keyboard.press("Tab")
    await page.keyboard.type(login.password)
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/console")
    await page.goto(f"/console/licenses/{seeded.license_id}")
    await page.locator("#suspend-reason").focus()
    await page.keyboard.type("by keyboard")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Suspend"
    await page.keyboard.press("Enter")
    await page.wait_for_url("**done=suspended")
    assert "SUSPENDED" in await page.locator("#license-status").inner_text()
