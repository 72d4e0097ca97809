"""The staff journeys in a real browser (the system Chromium), on SQLite and PostgreSQL: sign in, find a license,
suspend it and see the API report it suspended; answer an offline request by upload; grant credits and see the balance
move; a viewer sees no revoke button, and a POST without the session's CSRF token is refused."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from playwright.async_api import FilePayload

from license_server.auth.tokens import Role
from license_server.deployments.views import list_activations
from license_server.offline import files
from license_server.runtime import Runtime
from license_server.verifier import Verifier
from tests.conftest import TokenFactory
from tests.console.conftest import PageFactory, Seeded, StaffFactory, sign_in

pytestmark = pytest.mark.browser
FINGERPRINT = "fp1:" + "ab" * 32


async def test_staff_find_a_license_suspend_it_and_the_api_reports_it_suspended(
    new_page: PageFactory, make_staff: StaffFactory, seeded: Seeded, live_server: str, make_token: TokenFactory
) -> None:
    page = await new_page()
    await sign_in(page, await make_staff(Role.ADMIN))
    await page.get_by_role("link", name="Customers").click()
    await page.get_by_label("Name starts with, or exact email or external id").fill("acme")
    await page.get_by_role("button", name="Search").click()
    await page.get_by_role("link", name="Acme Corp").click()
    await page.get_by_role("link", name=f"…{seeded.license_key[-4:]}").click()
    await page.get_by_label("Reason").first.fill("invoice unpaid")
    await page.get_by_role("button", name="Suspend").click()
    await page.wait_for_url("**done=suspended")
    assert (await page.locator("#license-status").inner_text()) == "inactive (SUSPENDED)"
    assert await page.get_by_role("button", name="Reinstate").is_visible()

    headers = {"Authorization": f"Bearer {await make_token(Role.VIEWER)}"}
    async with httpx.AsyncClient(base_url=live_server) as api:
        answer = (await api.get(f"/v1/admin/licenses/{seeded.license_id}", headers=headers)).json()
    assert (answer["status"], answer["status_reason"]) == ("inactive", "SUSPENDED")


async def test_staff_answer_an_offline_activation_request_by_upload(
    new_page: PageFactory, make_staff: StaffFactory, seeded: Seeded, runtime: Runtime, tmp_path: Path
) -> None:
    install_key = Ed25519PrivateKey.generate()
    request_file = files.build_activation_request(
        install_key=install_key,
        license_key=seeded.license_key,
        fingerprint=FINGERPRINT,
        hostname="airgap-1",
        now=runtime.clock(),
    )
    page = await new_page()
    await sign_in(page, await make_staff(Role.ISSUER))
    await page.get_by_role("link", name="Offline requests").click()
    await page.get_by_label("Activation request file").set_input_files(
        files=FilePayload(name="activation-request.json", mimeType="application/json", buffer=request_file)
    )
    async with page.expect_download() as download_info:
        await page.get_by_role("button", name="Answer with a license file").click()
    download = await download_info.value
    saved = tmp_path / download.suggested_filename
    await download.save_as(saved)
    license_file = saved.read_text()
    assert download.suggested_filename == f"license-{seeded.license_id}.lic"
    # The file verifies offline against the root key and is bound to this install's fingerprint and key.
    verifier = Verifier(runtime.signer.keyring().root_public_key, clock=runtime.clock)
    verified = files.verify_license_file(
        license_file, verifier, fingerprint=FINGERPRINT, install_key=files.install_key_id(install_key.public_key())
    )
    assert verified.claims["status"] == "expiring"  # the seeded license ends in 20 days: inside its notice window
    assert verified.binding.fingerprint == FINGERPRINT
    async with runtime.session_factory() as db:
        activations, _ = await list_activations(db, license_id=seeded.license_id, state=None)
    assert [(a.fingerprint, a.hostname) for a in activations] == [(FINGERPRINT, "airgap-1")]  # one seat taken
    assert seeded.license_key not in license_file  # the key itself never travels in the answer


async def test_staff_grant_credits_and_see_the_balance_move(
    new_page: PageFactory, make_staff: StaffFactory, seeded: Seeded
) -> None:
    page = await new_page()
    await sign_in(page, await make_staff(Role.BILLING))
    await page.get_by_role("link", name="Billing accounts").click()
    await page.get_by_role("link", name=seeded.external_id).click()
    assert (await page.locator("#credit-balance").inner_text()) == "0"
    await page.get_by_label("Kind").select_option("prepaid")
    await page.get_by_label("Amount").fill("150.5")
    await page.get_by_label("Description").fill("goodwill")
    await page.get_by_role("button", name="Grant credits").click()
    await page.wait_for_url("**done=credits")
    assert (await page.locator("#credit-balance").inner_text()) == "150.5"
    assert await page.get_by_role("cell", name="goodwill").is_visible()
    # Reloading the POST is not possible (303), and re-sending the same form key would grant once: idempotent.


async def test_a_viewer_sees_no_revoke_button_and_a_post_without_the_csrf_token_is_refused(
    new_page: PageFactory, make_staff: StaffFactory, seeded: Seeded
) -> None:
    viewer = await new_page()
    await sign_in(viewer, await make_staff(Role.VIEWER))
    await viewer.goto(f"/console/licenses/{seeded.license_id}")
    assert "inactive" in await viewer.locator("#license-status").inner_text()
    assert await viewer.get_by_role("button", name="Revoke").count() == 0
    assert await viewer.get_by_role("button", name="Suspend").count() == 0
    refused = await viewer.evaluate(
        """async (path) => {
            const token = document.querySelector('meta[name="csrf-token"]').content;
            const response = await fetch(path, {method: "POST", body: new URLSearchParams({_csrf: token})});
            return [response.status, await response.text()];
        }""",
        f"/console/licenses/{seeded.license_id}/revoke",
    )
    assert refused[0] == 403  # the role is refused even with a valid token
    assert "permission_denied" in refused[1]

    admin = await new_page()
    await sign_in(admin, await make_staff(Role.ADMIN))
    await admin.goto(f"/console/licenses/{seeded.license_id}")
    assert await admin.get_by_role("button", name="Revoke").is_visible()
    forged = await admin.evaluate(
        """async (path) => {
            const response = await fetch(path, {method: "POST", body: new URLSearchParams({reason: "forged"})});
            return [response.status, await response.text()];
        }""",
        f"/console/licenses/{seeded.license_id}/revoke",
    )
    assert forged[0] == 403
    assert "csrf_token_invalid" in forged[1]
    await admin.reload()
    assert await admin.get_by_role("button", name="Revoke").is_visible()  # still not revoked
