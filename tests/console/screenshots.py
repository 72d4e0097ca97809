"""``make screenshots``: a PNG of each main console page, from a seeded demo database, into docs/screenshots/.

Runs the real app on 127.0.0.1 against a fresh SQLite file with development keys, seeds it through the services
(customers, licenses, a suspended one, a billing account with usage and credits), signs in as an owner and drives the
system Chromium. Deterministic data (a fixed clock), so the pictures only change when the pages do.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from playwright.async_api import async_playwright

from license_server.app import create_app
from license_server.auth.tokens import Role, cli_actor
from license_server.billing.accounts import service as accounts
from license_server.billing.accounts.models import BillingPlatform
from license_server.billing.credits import service as credits
from license_server.billing.credits.burndown import CreditKind
from license_server.billing.usage import service as usage
from license_server.config import Settings
from license_server.console import service as staff
from license_server.db.migrate import upgrade_database
from license_server.db.session import create_engine, create_session_factory
from license_server.licenses import service as licenses
from license_server.runtime import Runtime
from license_server.signing.keys import KeyStore
from license_server.signing.service import Signer
from tests.conftest import PASSPHRASE, MovableClock, make_settings
from tests.console.conftest import CHROMIUM, StaffLogin, seed_console_data, serving, sign_in
from tests.keyring import make_keys

OUT = Path(__file__).parents[2] / "docs" / "screenshots"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CUSTOMERS = ["Blue Harbor Labs", "Cobalt Systems", "Dunmore Analytics", "Evergreen Health", "Fjord Logistics"]


async def seed_demo(runtime: Runtime, clock: MovableClock) -> tuple[StaffLogin, dict[str, str]]:
    actor = cli_actor()
    seeded = await seed_console_data(runtime)
    async with runtime.session_factory() as db:
        for index, name in enumerate(CUSTOMERS):
            customer = await licenses.create_customer(db, actor=actor, name=name, clock=clock)
            issued = await licenses.issue_license(
                db,
                actor=actor,
                hasher=runtime.hasher,
                customer_id=customer.id,
                expires_at=clock() + timedelta(days=12 + 90 * index),
                clock=clock,
            )
            if index == 2:
                await licenses.suspend_license(
                    db, actor=actor, license_id=issued.view.license.id, reason="invoice unpaid", clock=clock
                )
        await credits.grant_credits(
            db,
            state=runtime.billing,
            actor=actor,
            account_id=(await accounts.get_account(db, seeded.platform_id, seeded.external_id)).id,
            kind=CreditKind.PREPAID,
            amount=Decimal(500),
            idempotency_key="demo-grant",
            description="prepaid pack",
            clock=clock,
        )
    async with runtime.session_factory() as db:
        account = await accounts.get_account(db, seeded.platform_id, seeded.external_id)
        account_id = account.id
    for day in range(12):
        clock.advance(timedelta(days=1))
        snapshot = await accounts.account_snapshot(
            runtime.billing,
            accounts.platform_snapshot(await _platform(runtime, seeded.platform_id)),
            seeded.external_id,
        )
        await usage.consume(
            runtime.billing, snapshot, key="messages", amount=20 + (day * 7) % 45, idempotency_key=f"demo-use-{day}"
        )
        async with runtime.session_factory() as db:
            await credits.debit_credits(
                db,
                state=runtime.billing,
                account_id=account_id,
                amount=Decimal(15 + day * 3),
                idempotency_key=f"demo-debit-{day}",
                description="model usage",
                clock=clock,
            )
    login = StaffLogin(email="owner@vendor.example", password="demo-password-not-secret", role=Role.OWNER)
    async with runtime.session_factory() as db:
        await staff.create_staff_user(db, email=login.email, password=login.password, role=login.role, clock=clock)
    return login, {
        "dashboard": "/console",
        "customers": "/console/customers?q=acme",
        "licenses": "/console/licenses",
        "license": f"/console/licenses/{seeded.license_id}",
        "offline": "/console/offline",
        "billing-plans": "/console/billing/plans",
        "accounts": "/console/billing/accounts",
        "account": seeded.account_path,
        "webhooks": "/console/webhooks",
        "audit": "/console/audit",
    }


async def _platform(runtime: Runtime, platform_id: uuid.UUID) -> BillingPlatform:
    async with runtime.session_factory() as db:
        return await accounts.get_platform(db, platform_id)


def main() -> int:
    if not CHROMIUM.exists():
        print(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        keys_dir, data_dir = root / "keys", root / "data"
        data_dir.mkdir()
        make_keys(keys_dir, PASSPHRASE)
        settings = make_settings(data_dir, keys_dir, None)
        upgrade_database(settings)  # before the event loop: migrations run their own
        asyncio.run(shoot(settings))
    return 0


async def shoot(settings: Settings) -> None:
    clock = MovableClock(NOW)
    engine = create_engine(settings)
    runtime = Runtime(
        settings=settings,
        signer=Signer(KeyStore(settings.keys_dir, PASSPHRASE), refresh_seconds=0),
        engine=engine,
        session_factory=create_session_factory(engine),
        clock=clock,
    )
    try:
        login, pages = await seed_demo(runtime, clock)
        OUT.mkdir(parents=True, exist_ok=True)
        async with serving(create_app(runtime)) as base, async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
            context = await browser.new_context(base_url=base, viewport={"width": 1280, "height": 900})
            page = await context.new_page()
            await page.goto("/console/sign-in")
            await page.screenshot(path=str(OUT / "sign-in.png"), full_page=True)
            await sign_in(page, login)
            for name, path in pages.items():
                await page.goto(path)
                await page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)
                print(f"wrote {OUT / (name + '.png')}")
            await browser.close()
    finally:
        await runtime.close()


if __name__ == "__main__":
    sys.exit(main())
