"""Concurrent activations that share a transaction (SQLite's group commit) answer exactly as if made one by one."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from license_server.auth.tokens import Actor
from license_server.deployments import activation_writer, service
from license_server.deployments.models import Activation
from license_server.deployments.runtime_state import PollState
from license_server.errors import LicenseKeyNotFound, LicenseNotUsable, TooManyActivations
from license_server.events.models import Event
from license_server.licenses import service as licenses
from license_server.licenses.terms import LicenseTerms
from license_server.runtime import Runtime
from license_server.verifier import Verifier
from tests.conftest import LicenseFactory, MovableClock
from tests.deployments.conftest import activate, bearer


async def _attempt(runtime: Runtime, clock: MovableClock, key: str, fingerprint: str) -> str:
    try:
        result = await service.activate(None, runtime=runtime, license_key=key, fingerprint=fingerprint, clock=clock)
    except TooManyActivations:
        return "409"
    except LicenseNotUsable as exc:
        return exc.code
    except LicenseKeyNotFound:
        return "404"
    return "created" if result.created else "existing"


async def _counts(runtime: Runtime) -> tuple[Counter[str], int]:
    async with runtime.session_factory() as db:
        events = Counter((await db.scalars(select(Event.type))).all())
        live = await db.scalar(select(func.count()).select_from(Activation).where(Activation.deactivated_at.is_(None)))
    return events, int(live or 0)


async def test_refusals_and_activations_of_several_licenses_at_once_answer_each_request_on_its_own(
    runtime: Runtime, make_license: LicenseFactory, clock: MovableClock, actor: Actor
) -> None:
    three_seats = await make_license(terms=LicenseTerms.model_validate({"max_activations": 3}))
    unlimited = await make_license(terms=LicenseTerms.model_validate({"max_activations": 0}))
    revoked = await make_license()
    async with runtime.session_factory() as db:
        await licenses.revoke_license(db, actor=actor, license_id=revoked.view.license.id, clock=clock)

    attempts: list[tuple[str, str]] = []
    for i in range(12):
        attempts += [
            (three_seats.key, f"seat-{i}"),
            (unlimited.key, f"free-{i}"),
            (revoked.key, f"gone-{i}"),
            ("LSK-NOT-A-REAL-KEY", f"none-{i}"),
            (unlimited.key, "free-same"),  # one fingerprint, twelve times: one activation
        ]
    outcomes = await asyncio.gather(*(_attempt(runtime, clock, key, fp) for key, fp in attempts))

    by_kind = Counter(zip((fp.split("-")[0] for _, fp in attempts), outcomes, strict=True))
    assert by_kind == {
        ("seat", "created"): 3,
        ("seat", "409"): 9,
        ("free", "created"): 13,  # free-0 .. free-11 and free-same once
        ("free", "existing"): 11,
        ("gone", "license_revoked"): 12,
        ("none", "404"): 12,
    }
    events, live = await _counts(runtime)
    assert live == 3 + 13
    assert events["activation.created"] == 3 + 13
    assert events["license.activated"] == 2  # once per license that got its first activation


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_batch_that_fails_is_retried_one_activation_at_a_time(
    runtime: Runtime, make_license: LicenseFactory, clock: MovableClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected failure rolls the whole batch back; each activation is then retried in its own transaction."""
    issued = await make_license(terms=LicenseTerms.model_validate({"max_activations": 5}))
    real = activation_writer.activate_one
    failures = {"left": 1}

    def flaky(*args: Any, **kwargs: Any) -> activation_writer.ActivationOutcome:
        outcome = real(*args, **kwargs)  # it has written its rows when it fails: the rollback must undo them
        if failures["left"]:
            failures["left"] -= 1
            raise OperationalError("INSERT ...", {}, Exception("disk I/O error"))
        return outcome

    monkeypatch.setattr(activation_writer, "activate_one", flaky)
    outcomes = await asyncio.gather(*(_attempt(runtime, clock, issued.key, f"host-{i}") for i in range(8)))

    assert failures["left"] == 0
    assert sorted(outcomes) == ["409"] * 3 + ["created"] * 5
    events, live = await _counts(runtime)
    assert live == 5
    assert (events["license.activated"], events["activation.created"]) == (1, 5)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_concurrent_sqlite_activations_share_transactions(
    runtime: Runtime, make_license: LicenseFactory, clock: MovableClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group commit happens: 40 concurrent activations take fewer than 40 transactions."""
    issued = await make_license(terms=LicenseTerms.model_validate({"max_activations": 0}))
    batches: list[int] = []
    real = activation_writer._write_batch

    def counting(engine: Any, hasher: Any, batch: list[Any]) -> Any:
        batches.append(len(batch))
        return real(engine, hasher, batch)

    monkeypatch.setattr(activation_writer, "_write_batch", counting)
    outcomes = await asyncio.gather(*(_attempt(runtime, clock, issued.key, f"host-{i}") for i in range(40)))

    assert outcomes == ["created"] * 40
    assert sum(batches) == 40
    assert len(batches) < 40


async def test_an_activation_answers_with_a_fresh_document_while_polls_are_served_from_the_cache(
    client: httpx.AsyncClient, make_license: LicenseFactory, runtime: Runtime, clock: MovableClock, actor: Actor
) -> None:
    """Activation reuses the polled document only when it says what the freshly read license says."""
    runtime.poll_state = PollState(
        cache_seconds=5.0, rate_limit_per_address=100_000, rate_limit_per_license_key=100_000
    )
    issued = await make_license(terms=LicenseTerms.model_validate({"max_activations": 0}))
    token = (await activate(client, issued, "host-a")).json()["deployment_token"]
    assert (await client.get("/v1/license", headers=bearer(token))).status_code == 200  # the poll cache is warm
    renewed_to = issued.view.license.expires_at + timedelta(days=365)
    async with runtime.session_factory() as db:
        await licenses.renew_license(
            db, actor=actor, license_id=issued.view.license.id, expires_at=renewed_to, clock=clock
        )

    answer = await activate(client, issued, "host-b")
    assert answer.status_code == 201, answer.text
    claims = Verifier(runtime.signer.keyring().root_public_key, clock=clock).verify(answer.json()["document"]).claims
    assert claims["expires_at"] == renewed_to.isoformat().replace("+00:00", "Z")
