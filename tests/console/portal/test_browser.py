"""The customer's journeys in the system Chromium, and axe-core on every portal page (no serious or critical
violation). Skipped with the reason where Chromium is absent, unless LICENSE_SERVER_REQUIRE_BROWSER=1."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from license_server.offline import files
from license_server.runtime import Runtime
from tests.console.conftest import PageFactory, axe_violations
from tests.console.portal.conftest import HostedAccount, LinkFactory, SelfHosted, issue_invoices, pdf_text
from tests.deployments.conftest import activate

if TYPE_CHECKING:
    from playwright.async_api import Page

pytestmark = pytest.mark.browser


async def _open(page: Page, link: str) -> None:
    """Open the link and start the session with the keyboard only: Tab to the button, Enter."""
    await page.goto(link)
    button = page.get_by_role("button", name="Continue to your account")
    for _ in range(5):  # the skip link comes first
        await page.keyboard.press("Tab")
        if await button.evaluate("b => b === document.activeElement"):
            break
    assert await button.evaluate("b => b === document.activeElement"), "the button is not reachable by Tab"
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/portal/overview")


async def _accessible(page: Page) -> None:
    violations = await axe_violations(page)
    assert violations == [], f"{page.url}: {violations}"


async def test_a_customer_opens_a_link_reads_the_usage_bars_and_cannot_reuse_it(
    new_page: PageFactory,
    client: httpx.AsyncClient,
    hosted: HostedAccount,
    account_link: LinkFactory,
    runtime: Runtime,
) -> None:
    report = (
        await client.get(hosted.platform.url(hosted.external_id, "limits"), headers=hosted.platform.headers)
    ).json()["data"]
    assert await issue_invoices(runtime) == 1  # the account's first invoice, as the scheduled job issues it
    link = await account_link("owner")
    page = await new_page()
    await page.goto(link)
    await _accessible(page)  # the start page
    await _open(page, link)
    assert await page.locator("#status").inner_text() == "Active"
    await _accessible(page)

    await page.get_by_role("link", name="Usage").click()
    await page.wait_for_url("**/portal/usage")
    await _accessible(page)
    for entry in report["limits"]:
        row = page.locator(f'tr[data-key="{entry["key"]}"]')
        if "limit" not in entry:
            assert "Unlimited" in await row.inner_text()
        elif entry["limit"] == 0:
            assert "Not available on plan" in await row.inner_text()
        else:
            bar = row.locator("progress")
            assert await bar.get_attribute("value") == str(entry["used"])
            assert await bar.get_attribute("max") == str(entry["limit"])
            assert f"{entry['used']} / {entry['limit']}" in await row.inner_text()
    assert await page.get_by_role("heading", name="Total resource limits").is_visible()
    assert "Resets " + report["period_end"][:10] == await page.locator("#resets").inner_text()

    # the chart's breakdown switches in place (HTMX) and reads the same without it
    await page.get_by_role("link", name="By agent").click()
    await page.wait_for_url("**/portal/usage?by=agent")
    assert "support-bot" in await page.locator("#usage-chart svg").inner_html()
    await _accessible(page)

    for name in ("Credits", "Invoices", "Plans", "Overview"):
        await page.get_by_role("link", name=name, exact=True).click()
        await page.wait_for_url(f"**/portal/{name.lower()}")
        await _accessible(page)

    again = await new_page()
    await again.goto(link)
    assert "portal_link_used" in await again.content()
    assert "already used" in await again.locator("[role=alert]").inner_text()
    await _accessible(again)

    # The invoice issued in the setup, through billing/invoices: its real PDF, with the total the list shows.
    await page.goto("/portal/invoices")
    await _accessible(page)
    row = page.locator("table.invoices tbody tr").first
    number = (await row.locator("td").first.inner_text()).strip()
    total = (await row.locator("td").nth(2).inner_text()).strip()
    assert total == "59.00 USD"
    pdf_link = page.get_by_role("link", name=f"Download PDF of invoice {number}")
    href = await pdf_link.get_attribute("href")
    assert href is not None
    async with page.expect_download() as info:
        await pdf_link.click()
    download = await info.value
    text = pdf_text(await asyncio.to_thread(Path(await download.path()).read_bytes))
    assert number in text
    assert "59.00" in text
    assert download.suggested_filename == f"invoice-{href.split('/')[-2]}.pdf"


async def test_a_member_sees_no_billing_pages(new_page: PageFactory, account_link: LinkFactory) -> None:
    link = await account_link("member")
    page = await new_page()
    await page.goto(link)
    await page.get_by_role("button", name="Continue to your account").click()
    await page.wait_for_url("**/portal/")
    assert await page.get_by_role("link", name="Usage").count() == 0
    assert await page.get_by_role("link", name="Overview").count() == 0
    await _accessible(page)
    await page.goto("/portal/usage")
    assert "permission_denied" in await page.content()
    assert "may not see the billing pages" in await page.locator("[role=alert]").inner_text()
    await _accessible(page)


async def test_a_self_hosted_customer_downloads_a_license_file_for_an_offline_request(
    new_page: PageFactory,
    client: httpx.AsyncClient,
    customer_link: LinkFactory,
    self_hosted: SelfHosted,
    runtime: Runtime,
    tmp_path: Path,
) -> None:
    assert (await activate(client, self_hosted.license_key, fingerprint="fp-1", hostname="prod-1")).status_code in (
        200,
        201,
    )
    page = await new_page()
    await page.goto(await customer_link("admin"))
    await page.get_by_role("button", name="Continue to your account").click()
    await page.wait_for_url("**/portal/licenses")
    await _accessible(page)
    await page.get_by_role("link", name=str(self_hosted.license_id)).click()
    assert "prod-1" in await page.locator("table.activations").inner_text()
    await _accessible(page)

    request = tmp_path / "activation-request.json"
    request.write_bytes(
        files.build_activation_request(
            install_key=Ed25519PrivateKey.generate(),
            license_key=self_hosted.license_key,
            fingerprint="air-1",
            hostname="vault",
            now=runtime.clock(),
        )
    )
    await page.get_by_role("link", name="Offline activation").click()
    await _accessible(page)
    await page.get_by_label("Activation request file").set_input_files(str(request))
    async with page.expect_download() as info:
        await page.get_by_role("button", name="Get the license file").click()
    download = await info.value
    assert (await asyncio.to_thread(Path(await download.path()).read_text)).startswith(files.ARMOR_BEGIN)
