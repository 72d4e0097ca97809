"""Seat limits under real concurrency, the validation guard ladder, and rate limits."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import httpx
import jwt
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from sqlalchemy import func, select

from license_server.deployments import service
from license_server.deployments.models import Activation
from license_server.errors import TooManyActivations
from license_server.licenses import service as licenses
from license_server.licenses.terms import LicenseTerms
from license_server.runtime import Runtime
from license_server.verifier import Verifier
from tests.conftest import LicenseFactory, MovableClock
from tests.deployments.conftest import activate

DAY = timedelta(days=1)


async def test_200_concurrent_activations_on_10_seats_yield_exactly_10(
    runtime: Runtime, make_license: LicenseFactory, clock: MovableClock
) -> None:
    issued = await make_license(terms=LicenseTerms.model_validate({"max_activations": 10}))

    async def attempt(index: int) -> str:
        async with runtime.session_factory() as db:
            try:
                await service.activate(
                    db, runtime=runtime, license_key=issued.key, fingerprint=f"host-{index}", clock=clock
                )
            except TooManyActivations:
                return "409"
            return "ok"

    outcomes = await asyncio.gather(*(attempt(i) for i in range(200)))
    assert (outcomes.count("ok"), outcomes.count("409")) == (10, 190)
    async with runtime.session_factory() as db:
        live = await db.scalar(select(func.count()).select_from(Activation).where(Activation.deactivated_at.is_(None)))
    assert live == 10


async def test_concurrent_activations_of_one_fingerprint_take_one_seat(
    runtime: Runtime, make_license: LicenseFactory, clock: MovableClock
) -> None:
    issued = await make_license(terms=LicenseTerms.model_validate({"max_activations": 5}))

    async def attempt() -> bool:
        async with runtime.session_factory() as db:
            result = await service.activate(
                db, runtime=runtime, license_key=issued.key, fingerprint="same-host", clock=clock
            )
            return result.created

    created = await asyncio.gather(*(attempt() for _ in range(20)))
    assert created.count(True) == 1


VERDICT_SCHEMA = Draft202012Validator(
    json.loads((Path(__file__).resolve().parents[2] / "docs" / "license-validation.schema.json").read_text())
)


async def validate(client: httpx.AsyncClient, key: str, fingerprint: str | None = None) -> dict[str, object]:
    """POST /v1/licenses/validate; every signed verdict is checked against docs/license-validation.schema.json."""
    body: dict[str, object] = {"license_key": key, "nonce": "n-123"}
    if fingerprint:
        body["fingerprint"] = fingerprint
    response = await client.post("/v1/licenses/validate", json=body)
    assert response.status_code == 200, response.text
    payload: dict[str, object] = response.json()
    claims = jwt.decode(str(payload["signed"]), options={"verify_signature": False})
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VERDICT_SCHEMA.iter_errors(claims)]
    assert not errors, errors
    return payload


async def test_validation_walks_its_guard_clauses_in_order(
    client: httpx.AsyncClient, make_license: LicenseFactory, runtime: Runtime, clock: MovableClock
) -> None:
    from license_server.auth.tokens import cli_actor

    assert (await validate(client, "LSK-NOPE"))["code"] == "NOT_FOUND"
    issued = await make_license(terms=LicenseTerms.model_validate({"max_activations": 2, "heartbeat_window_days": 1}))
    assert (await validate(client, issued.key))["code"] == "NO_ACTIVATION"
    await activate(client, issued, "host-a")
    ok = await validate(client, issued.key, "host-a")
    assert (ok["valid"], ok["code"], ok["status"], ok["nonce"]) == (True, "VALID", "active", "n-123")
    signed = Verifier(runtime.signer.keyring().root_public_key, clock=clock, expected_type="license-validation+jwt")
    claims = signed.verify(str(ok["signed"])).claims
    assert (claims["valid"], claims["code"], claims["nonce"]) == (True, "VALID", "n-123")
    assert (await validate(client, issued.key, "host-z"))["code"] == "FINGERPRINT_MISMATCH"
    clock.advance(2 * DAY)
    assert (await validate(client, issued.key, "host-a"))["code"] == "HEARTBEAT_DEAD"
    await activate(client, issued, "host-a")  # activating again is a check-in
    async with runtime.session_factory() as db:
        await licenses.update_license(
            db,
            actor=cli_actor(),
            license_id=issued.view.license.id,
            clock=clock,
            terms=LicenseTerms.model_validate({"max_activations": 2}),
        )
        await activate(client, issued, "host-b")
        await licenses.update_license(
            db,
            actor=cli_actor(),
            license_id=issued.view.license.id,
            clock=clock,
            terms=LicenseTerms.model_validate({"max_activations": 1}),
        )
    assert (await validate(client, issued.key, "host-a"))["code"] == "TOO_MANY_ACTIVATIONS"
    async with runtime.session_factory() as db:
        await licenses.suspend_license(db, actor=cli_actor(), license_id=issued.view.license.id, clock=clock)
    assert (await validate(client, issued.key, "host-a"))["code"] == "SUSPENDED"
    async with runtime.session_factory() as db:
        await licenses.revoke_license(db, actor=cli_actor(), license_id=issued.view.license.id, clock=clock)
    assert (await validate(client, issued.key, "host-a"))["code"] == "REVOKED"


async def test_a_lost_license_is_not_valid_with_or_without_a_fingerprint(
    client: httpx.AsyncClient, make_license: LicenseFactory, clock: MovableClock
) -> None:
    issued = await make_license(terms=LicenseTerms.model_validate({"heartbeat_window_days": 1}))
    await activate(client, issued, "host-a")
    clock.advance(2 * DAY)  # nothing has checked in since: the license is lost
    for fingerprint in (None, "host-a"):
        verdict = await validate(client, issued.key, fingerprint)
        assert (verdict["valid"], verdict["code"], verdict["status"]) == (False, "HEARTBEAT_DEAD", "lost")
    await activate(client, issued, "host-a")  # a check-in recovers it
    assert (await validate(client, issued.key))["code"] == "VALID"


async def test_the_signed_verdict_names_the_license_and_the_fingerprint_asked_about(
    client: httpx.AsyncClient, make_license: LicenseFactory, runtime: Runtime, clock: MovableClock
) -> None:
    issued = await make_license()
    await activate(client, issued, "host-a")
    verifier = Verifier(runtime.signer.keyring().root_public_key, clock=clock, expected_type="license-validation+jwt")
    license_id = str(issued.view.license.id)
    for key, fingerprint, expected in [
        (issued.key, "host-a", (license_id, "host-a", "VALID")),
        (issued.key, None, (license_id, None, "VALID")),
        (issued.key, "host-z", (license_id, "host-z", "FINGERPRINT_MISMATCH")),
        ("LSK-NOPE", "host-a", (None, "host-a", "NOT_FOUND")),
    ]:
        verdict = await validate(client, key, fingerprint)
        claims = verifier.verify(str(verdict["signed"])).claims
        assert (claims["license_id"], claims["fingerprint"], claims["code"]) == expected
        assert (verdict["license_id"], verdict["fingerprint"], verdict["code"]) == expected
        assert claims["nonce"] == verdict["nonce"] == "n-123"


async def test_validation_reports_expiry_and_expiring(
    client: httpx.AsyncClient, make_license: LicenseFactory, clock: MovableClock
) -> None:
    soon = await make_license(expires_at=clock() + 10 * DAY)
    await activate(client, soon)
    result = await validate(client, soon.key)
    assert (result["valid"], result["code"], result["status"]) == (True, "VALID", "expiring")
    future = await make_license(starts_at=clock() + DAY)
    assert (await validate(client, future.key))["code"] == "NOT_STARTED"
    lapsed = await make_license(starts_at=clock() - 9 * DAY, expires_at=clock() + DAY)
    await activate(client, lapsed)
    clock.advance(2 * DAY)
    assert (await validate(client, lapsed.key))["code"] == "EXPIRED"


async def test_guessing_keys_hits_the_rate_limit_with_retry_after(client: httpx.AsyncClient, runtime: Runtime) -> None:
    from license_server.deployments.runtime_state import RateLimiter
    from license_server.replicas.limits import InProcessRequestLimit

    runtime.poll_state.address_limiter = InProcessRequestLimit(RateLimiter(5))
    statuses = [(await activate(client, f"LSK-GUESS-{i}")).status_code for i in range(8)]
    assert statuses == [404] * 5 + [429] * 3
    limited = await activate(client, "LSK-GUESS-X")
    assert limited.json()["code"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 60


async def test_one_license_key_is_limited_across_addresses(
    client: httpx.AsyncClient, runtime: Runtime, make_license: LicenseFactory
) -> None:
    from license_server.deployments.runtime_state import RateLimiter
    from license_server.replicas.limits import InProcessRequestLimit

    runtime.poll_state.license_key_limiter = InProcessRequestLimit(RateLimiter(3))
    issued = await make_license()
    statuses = [(await activate(client, issued, f"h{i}")).status_code for i in range(5)]
    assert statuses[3:] == [429, 429]
    other = await make_license()
    assert (await activate(client, other)).status_code == 201
