"""Staff sign-in: Argon2id hashes, cookies with the right flags, throttling per account and address that locks out
no one else, sessions in the database that sign-out-everywhere ends on every replica, and the CLI."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar
from sqlalchemy import select

from license_server.auth.tokens import Role
from license_server.config import Settings
from license_server.console.models import StaffUser
from license_server.console.sessions import SESSION_COOKIE
from license_server.runtime import Runtime
from tests.console.conftest import StaffFactory, StaffLogin, http_sign_in
from tests.e2e.conftest import LICENSE_SERVER, Cli, clean_env

GUESS_LIMIT = 3


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The suite's settings with a small limit of wrong passwords, so the throttle is reached in a few tries."""
    return settings.model_copy(update={"rate_limit_failed_auth_per_address": GUESS_LIMIT})


def client_from(app: Litestar, address: str, origin: str = "http://127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url=origin)


async def sign_in_attempt(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    form = await client.get("/console/sign-in")
    token = form.text.split('name="_csrf" value="', 1)[1].split('"', 1)[0]
    return await client.post("/console/sign-in", data={"email": email, "password": password, "_csrf": token})


async def test_the_password_is_stored_as_an_argon2id_hash(runtime: Runtime, make_staff: StaffFactory) -> None:
    login = await make_staff(Role.VIEWER)
    async with runtime.session_factory() as db:
        user = await db.scalar(select(StaffUser).where(StaffUser.email == login.email))
    assert user is not None
    assert user.password_hash.startswith("$argon2id$")
    assert login.password not in user.password_hash


async def test_the_session_cookie_is_httponly_samesite_and_secure_off_loopback(
    app: Litestar, make_staff: StaffFactory
) -> None:
    login = await make_staff(Role.VIEWER)
    for origin, secure in (("http://127.0.0.1", False), ("https://console.vendor.example", True)):
        async with client_from(app, "10.0.0.1", origin) as client:
            response = await sign_in_attempt(client, login.email, login.password)
        assert response.status_code == 303
        cookie = next(v for k, v in response.headers.multi_items() if k == "set-cookie" and SESSION_COOKIE in v)
        assert "HttpOnly" in cookie
        assert "SameSite=lax" in cookie or "SameSite=Lax" in cookie
        assert ("Secure" in cookie) is secure, (origin, cookie)


async def test_wrong_passwords_throttle_only_that_account_from_that_address(
    app: Litestar, make_staff: StaffFactory
) -> None:
    alice, bob = await make_staff(Role.ADMIN), await make_staff(Role.VIEWER)
    async with client_from(app, "203.0.113.7") as guesser:
        for attempt in range(GUESS_LIMIT):
            refused = await sign_in_attempt(guesser, alice.email, f"wrong-password-{attempt}")
            assert refused.status_code == 401
            assert "staff_sign_in_failed" in refused.text
        throttled = await sign_in_attempt(guesser, alice.email, alice.password)  # even the right one, from here
        assert throttled.status_code == 429
        assert "rate_limited" in throttled.text
        assert int(throttled.headers["retry-after"]) > 0
        other_user = await sign_in_attempt(guesser, bob.email, bob.password)  # same address, another account
        assert other_user.status_code == 303
    async with client_from(app, "198.51.100.20") as owner_elsewhere:
        assert (await sign_in_attempt(owner_elsewhere, alice.email, alice.password)).status_code == 303


async def test_unknown_email_and_wrong_password_get_the_same_answer(app: Litestar, make_staff: StaffFactory) -> None:
    login = await make_staff(Role.VIEWER)
    async with client_from(app, "10.1.1.1") as client:
        wrong_password = await sign_in_attempt(client, login.email, "not-the-password")
        unknown = await sign_in_attempt(client, "nobody@vendor.example", "not-the-password")
    assert wrong_password.status_code == unknown.status_code == 401
    assert "staff_sign_in_failed" in wrong_password.text
    assert "staff_sign_in_failed" in unknown.text


async def test_sign_out_everywhere_ends_every_session_of_the_user(app: Litestar, make_staff: StaffFactory) -> None:
    login: StaffLogin = await make_staff(Role.ISSUER)
    async with client_from(app, "10.0.0.1") as laptop, client_from(app, "10.0.0.2") as phone:
        laptop_csrf = await http_sign_in(laptop, login)
        await http_sign_in(phone, login)
        assert (await phone.get("/console/licenses")).status_code == 200
        response = await laptop.post("/console/sign-out-everywhere", data={"_csrf": laptop_csrf})
        assert response.status_code == 303
        for device in (laptop, phone):
            page = await device.get("/console/licenses")
            assert page.status_code == 303
            assert page.headers["location"] == "/console/sign-in"


async def test_a_sign_in_form_without_its_csrf_token_is_refused(app: Litestar, make_staff: StaffFactory) -> None:
    login = await make_staff(Role.VIEWER)
    async with client_from(app, "10.0.0.3") as client:
        await client.get("/console/sign-in")
        response = await client.post("/console/sign-in", data={"email": login.email, "password": login.password})
    assert response.status_code == 403
    assert "csrf_token_invalid" in response.text


@pytest.mark.slow
def test_the_cli_creates_a_staff_user_with_a_password_from_stdin(tmp_path: Path) -> None:
    cli = Cli(cwd=tmp_path, env=clean_env())
    cli.run("init", "--dev")

    def create(email: str, password: str, *extra: str) -> subprocess.CompletedProcess[str]:
        command: list[Any] = [LICENSE_SERVER, "staff", "create", "--email", email, "--role", "admin"]
        return subprocess.run(
            [*command, "--password-stdin", *extra],
            cwd=cli.cwd,
            env=cli.env,
            input=password + "\n",
            capture_output=True,
            text=True,
            timeout=60,
        )

    created = create("First.Admin@Vendor.example", "a long enough password")
    assert created.returncode == 0, created.stderr
    assert "a long enough password" not in created.stdout + created.stderr
    listed = cli.json("staff", "list")
    assert [(u["email"], u["role"]) for u in listed["items"]] == [("first.admin@vendor.example", "admin")]
    again = create("first.admin@vendor.example", "a long enough password")
    assert again.returncode == 1
    assert "staff_user_exists" in again.stderr
    short = create("second@vendor.example", "short")
    assert short.returncode == 1
    assert "validation_error" in short.stderr
