"""Portal links: made by a platform or by staff, stored hashed, open the portal once, expire, and start a server-side
session whose cookie is Secure, HttpOnly and SameSite; signing out ends it everywhere."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
from sqlalchemy import select

from license_server.auth.tokens import Role
from license_server.console.portal.models import PortalLink, PortalSession
from license_server.runtime import Runtime
from tests.conftest import MovableClock, TokenFactory
from tests.console.portal.conftest import HostedAccount, LinkFactory, SelfHosted, csrf_of, open_link, signed_in


async def test_a_platform_link_opens_the_portal_once_and_is_stored_only_as_a_digest(
    client: httpx.AsyncClient, web: httpx.AsyncClient, hosted: HostedAccount, runtime: Runtime
) -> None:
    made = await client.post(
        hosted.platform.url(hosted.external_id, "portal-sessions"),
        headers=hosted.platform.headers,
        json={"role": "owner"},
    )
    assert made.status_code == 201, made.text
    body = made.json()
    url = httpx.URL(body["url"])
    token = url.path.rsplit("/", 1)[1]
    assert url.path.startswith("/portal/start/lspl_")
    assert body["role"] == "owner"
    async with runtime.session_factory() as db:
        link = (await db.scalars(select(PortalLink))).one()
        assert link.token_hash == runtime.hasher.digest(token)
        assert token not in repr(vars(link))

    started = await open_link(web, url.path)
    assert started.status_code == 303
    assert started.headers["location"] == "/portal/"
    cookie = started.headers["set-cookie"].lower()
    assert all(flag in cookie for flag in ("secure", "httponly", "samesite=strict", "path=/portal"))
    home = await web.get("/portal/")
    assert home.status_code == 303
    assert home.headers["location"] == "/portal/overview"

    again = await web.post("/portal/start", data={"token": token})
    assert again.status_code == 401
    assert "portal_link_used" in again.text
    reopened = await web.get(url.path)
    assert reopened.status_code == 401
    assert "portal_link_used" in reopened.text
    assert "text/html" in reopened.headers["content-type"]


async def test_a_link_expires_after_ten_minutes_unused(
    web: httpx.AsyncClient, account_link: LinkFactory, clock: MovableClock
) -> None:
    path = await account_link()
    clock.advance(timedelta(minutes=10, seconds=1))
    page = await web.get(path)
    assert page.status_code == 401
    assert "portal_link_expired" in page.text
    spent = await web.post("/portal/start", data={"token": path.rsplit("/", 1)[1]})
    assert spent.status_code == 401
    assert "portal_link_expired" in spent.text


async def test_an_unknown_link_is_refused_in_words(web: httpx.AsyncClient) -> None:
    page = await web.get("/portal/start/lspl_not-a-real-token")
    assert page.status_code == 401
    assert "portal_link_invalid" in page.text
    assert "not valid" in page.text


async def test_two_concurrent_redemptions_of_one_link_start_exactly_one_session(
    app: object, account_link: LinkFactory, runtime: Runtime
) -> None:
    path = await account_link()
    token = path.rsplit("/", 1)[1]

    async def redeem() -> int:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as one:
            return (await one.post("/portal/start", data={"token": token})).status_code

    statuses = sorted(await asyncio.gather(*(redeem() for _ in range(4))))
    assert statuses == [303, 401, 401, 401]
    async with runtime.session_factory() as db:
        assert len((await db.scalars(select(PortalSession))).all()) == 1


async def test_sign_out_ends_the_session_and_needs_the_csrf_token(
    web: httpx.AsyncClient, account_link: LinkFactory
) -> None:
    await signed_in(web, await account_link())
    overview = await web.get("/portal/overview")
    assert overview.status_code == 200
    forged = await web.post("/portal/sign-out", data={})
    assert forged.status_code == 403
    assert "csrf_token_invalid" in forged.text
    assert (await web.get("/portal/overview")).status_code == 200  # the forged POST changed nothing
    out = await web.post("/portal/sign-out", data={"_csrf": csrf_of(overview.text)})
    assert out.status_code == 200
    assert "signed out" in out.text
    cookie = web.cookies.get("ls_portal")
    assert cookie is None
    after = await web.get("/portal/overview")
    assert after.status_code == 401
    assert "portal_session_required" in after.text


async def test_a_session_cookie_replayed_after_sign_out_is_refused(
    web: httpx.AsyncClient, app: object, account_link: LinkFactory
) -> None:
    await signed_in(web, await account_link())
    stolen = web.cookies.get("ls_portal")
    page = await web.get("/portal/overview")
    await web.post("/portal/sign-out", data={"_csrf": csrf_of(page.text)})
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(
        transport=transport, base_url="https://testserver", cookies={"ls_portal": stolen or ""}
    ) as thief:
        assert (await thief.get("/portal/overview")).status_code == 401


async def test_the_session_expires_after_eight_hours(
    web: httpx.AsyncClient, account_link: LinkFactory, clock: MovableClock
) -> None:
    await signed_in(web, await account_link())
    clock.advance(timedelta(hours=8))
    assert (await web.get("/portal/overview")).status_code == 401


async def test_staff_make_customer_links_with_issue_permission_and_account_links_with_billing_write(
    client: httpx.AsyncClient, make_token: TokenFactory, self_hosted: SelfHosted, hosted: HostedAccount
) -> None:
    customer_route = f"/v1/admin/customers/{self_hosted.customer_id}/portal-sessions"
    account_route = f"/v1/admin/billing/platforms/{hosted.platform.id}/accounts/{hosted.external_id}/portal-sessions"
    expected = {
        Role.OWNER: (201, 201),
        Role.ADMIN: (201, 201),
        Role.ISSUER: (201, 403),
        Role.VIEWER: (403, 403),
        Role.BILLING: (403, 201),
    }
    for role, (for_customer, for_account) in expected.items():
        headers = {"Authorization": f"Bearer {await make_token(role)}"}
        made = await client.post(customer_route, headers=headers, json={"role": "member"})
        assert made.status_code == for_customer, (role, made.text)
        made = await client.post(account_route, headers=headers, json={"role": "billing:read"})
        assert made.status_code == for_account, (role, made.text)
    assert (await client.post(customer_route, json={"role": "owner"})).status_code == 401


async def test_bad_link_requests_are_400_naming_the_field(
    client: httpx.AsyncClient, hosted: HostedAccount, owner_headers: dict[str, str]
) -> None:
    route = hosted.platform.url(hosted.external_id, "portal-sessions")
    bad_role = await client.post(route, headers=hosted.platform.headers, json={"role": "superuser"})
    assert bad_role.status_code == 400
    assert bad_role.json()["errors"][0]["field"] == "role"
    insecure = await client.post(
        route, headers=hosted.platform.headers, json={"role": "owner", "payment_url": "http://pay.example.com"}
    )
    assert insecure.status_code == 400
    assert insecure.json()["errors"][0]["field"] == "payment_url"
    unknown = await client.post(
        "/v1/admin/customers/00000000-0000-4000-8000-000000000000/portal-sessions",
        headers=owner_headers,
        json={"role": "owner"},
    )
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "customer_not_found"
    no_secret = await client.post(route, json={"role": "owner"})
    assert no_secret.status_code == 401
