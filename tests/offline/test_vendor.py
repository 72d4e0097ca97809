"""The vendor's side, over the admin API on SQLite and PostgreSQL: answers are activations, usage imports are usage."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, event, func, select, update
from sqlalchemy.orm import Session

from license_server.auth.models import AuditEvent
from license_server.auth.tokens import Role
from license_server.config import Settings
from license_server.db.session import create_engine, create_session_factory
from license_server.deployments import service as deployments
from license_server.deployments.activation_writer import ActivationRequest, activate_in_transaction
from license_server.deployments.models import Activation, UsageReport
from license_server.errors import TooManyActivations
from license_server.events.models import Event
from license_server.events.service import EventType
from license_server.licenses.license_keys import normalise_license_key
from license_server.licenses.models import License
from license_server.licenses.terms import LicenseTerms
from license_server.offline import files, service
from license_server.offline.files import Binding, Measurement
from license_server.offline.models import OfflineBinding, OfflineUsageImport
from license_server.runtime import Runtime
from license_server.signing.keys import KeyStore
from license_server.signing.service import Signer
from license_server.verifier import Verifier
from tests.conftest import PASSPHRASE, LicenseFactory, MovableClock, TokenFactory

FINGERPRINT = "fp1:" + "cd" * 32


def _request(key: Ed25519PrivateKey, license_key: str, clock: MovableClock, fingerprint: str = FINGERPRINT) -> Any:
    text = files.build_activation_request(
        install_key=key, license_key=license_key, fingerprint=fingerprint, hostname="airgap-1", now=clock()
    )
    return json.loads(text)


def _report(
    key: Ed25519PrivateKey, answer: dict[str, Any], seq: int, prev: str, clock: MovableClock, **usage: Any
) -> Any:
    measurements = [
        Measurement(
            clock() - timedelta(hours=1), f"u-{seq}", usage.get("seats", 4), usage.get("workspaces", (("ws-1", 6),))
        )
    ]
    text = files.build_usage_report(
        install_key=key,
        binding=Binding(answer["activation_id"], FINGERPRINT, files.install_key_id(key.public_key())),
        license_id=answer["license_id"],
        seq=seq,
        prev=prev,
        measurements=measurements,
        now=clock(),
    )
    return json.loads(text)


@pytest.fixture
async def issuer(make_token: TokenFactory) -> dict[str, str]:
    return {"Authorization": f"Bearer {await make_token(Role.ISSUER)}"}


async def test_an_answer_is_a_bound_license_file_counted_as_an_activation_and_audited(
    client: httpx.AsyncClient,
    make_license: LicenseFactory,
    issuer: dict[str, str],
    owner_headers: dict[str, str],
    runtime: Runtime,
    clock: MovableClock,
) -> None:
    issued = await make_license()
    key = Ed25519PrivateKey.generate()
    response = await client.post(
        "/v1/admin/offline/responses", json={"request": _request(key, issued.key, clock)}, headers=issuer
    )
    assert response.status_code == 201, response.text
    answer = response.json()
    verifier = Verifier(runtime.signer.keyring().root_public_key, clock=clock)
    verified = files.verify_license_file(
        answer["license_file"], verifier, fingerprint=FINGERPRINT, install_key=files.install_key_id(key.public_key())
    )
    assert verified.claims["status"] == "active"
    assert verified.binding.activation_id == answer["activation_id"]
    assert verified.claims["exp"] == int(
        issued.view.license.expires_at.timestamp()
    )  # the file lives as long as the license
    license_id = answer["license_id"]
    activations = (await client.get(f"/v1/admin/licenses/{license_id}/activations", headers=owner_headers)).json()
    assert [(a["fingerprint"], a["hostname"]) for a in activations] == [(FINGERPRINT, "airgap-1")]
    audit = (await client.get(f"/v1/admin/audit-events?target_id={license_id}", headers=owner_headers)).json()
    assert "offline.responded" in {event["action"] for event in audit["items"]}


async def test_seat_limits_apply_and_asking_again_takes_no_second_seat(
    client: httpx.AsyncClient, make_license: LicenseFactory, issuer: dict[str, str], clock: MovableClock
) -> None:
    issued = await make_license()  # max_activations defaults to 1
    first, second = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    answered = await client.post(
        "/v1/admin/offline/responses", json={"request": _request(first, issued.key, clock)}, headers=issuer
    )
    again = await client.post(
        "/v1/admin/offline/responses", json={"request": _request(first, issued.key, clock)}, headers=issuer
    )
    assert (answered.status_code, again.status_code) == (201, 200)
    assert again.json()["activation_id"] == answered.json()["activation_id"]
    refused = await client.post(
        "/v1/admin/offline/responses",
        json={"request": _request(second, issued.key, clock, fingerprint="fp1:other")},
        headers=issuer,
    )
    assert refused.status_code == 409
    assert refused.json()["code"] == "too_many_activations"


async def test_an_install_key_cannot_be_rebound_to_another_fingerprint(
    client: httpx.AsyncClient, make_license: LicenseFactory, issuer: dict[str, str], clock: MovableClock
) -> None:
    issued = await make_license(terms=None)
    key = Ed25519PrivateKey.generate()
    await client.post("/v1/admin/offline/responses", json={"request": _request(key, issued.key, clock)}, headers=issuer)
    moved = await client.post(
        "/v1/admin/offline/responses",
        json={"request": _request(key, issued.key, clock, fingerprint="fp1:elsewhere")},
        headers=issuer,
    )
    assert moved.status_code == 409
    assert moved.json()["code"] == "offline_binding_conflict"


async def test_a_changed_request_is_refused_with_a_reason_code_and_takes_no_seat(
    client: httpx.AsyncClient,
    make_license: LicenseFactory,
    issuer: dict[str, str],
    owner_headers: dict[str, str],
    clock: MovableClock,
) -> None:
    issued = await make_license()
    request = _request(Ed25519PrivateKey.generate(), issued.key, clock)
    request["hostname"] = "someone-else"
    response = await client.post("/v1/admin/offline/responses", json={"request": request}, headers=issuer)
    assert response.status_code == 400
    assert response.json()["code"] == "offline_bad_signature"
    assert response.json()["errors"][0]["field"] == "signature"
    activations = await client.get(f"/v1/admin/licenses/{issued.view.license.id}/activations", headers=owner_headers)
    assert activations.json() == []


async def test_renewal_answers_the_same_binding_without_a_new_activation(
    client: httpx.AsyncClient,
    make_license: LicenseFactory,
    issuer: dict[str, str],
    owner_headers: dict[str, str],
    clock: MovableClock,
) -> None:
    issued = await make_license()
    key = Ed25519PrivateKey.generate()
    first = (
        await client.post(
            "/v1/admin/offline/responses", json={"request": _request(key, issued.key, clock)}, headers=issuer
        )
    ).json()
    clock.advance(timedelta(days=400))  # the first file has expired: renewal still accepts it
    renewed = await client.post(
        "/v1/admin/offline/renewals", json={"license_file": first["license_file"]}, headers=issuer
    )
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["activation_id"] == first["activation_id"]
    assert renewed.json()["created"] is False
    assert renewed.json()["license_file"] != first["license_file"]
    activations = await client.get(f"/v1/admin/licenses/{issued.view.license.id}/activations", headers=owner_headers)
    assert len(activations.json()) == 1
    tampered = first["license_file"].replace("Customer: Acme Corp", "Customer: Evil Corp")
    refused = await client.post("/v1/admin/offline/renewals", json={"license_file": tampered}, headers=issuer)
    assert (refused.status_code, refused.json()["code"]) == (400, "offline_malformed")


async def test_imported_usage_shows_up_exactly_like_online_usage_a_replay_answers_the_same_and_gaps_are_refused(
    client: httpx.AsyncClient,
    make_license: LicenseFactory,
    issuer: dict[str, str],
    owner_headers: dict[str, str],
    clock: MovableClock,
) -> None:
    issued = await make_license()
    key = Ed25519PrivateKey.generate()
    answer = (
        await client.post(
            "/v1/admin/offline/responses", json={"request": _request(key, issued.key, clock)}, headers=issuer
        )
    ).json()
    genesis = files.genesis_hash(files.install_key_id(key.public_key()))
    first = _report(key, answer, 1, genesis, clock, seats=7, workspaces=(("ws-1", 9), ("ws-2", 2)))
    imported = await client.post("/v1/admin/offline/usage-reports", json={"report": first}, headers=issuer)
    assert imported.status_code == 200, imported.text
    expected = {"workspaces": 2, "members_per_workspace": 9, "licensed_seats": 7}
    assert imported.json()["usage"] == expected
    usage = await client.get(f"/v1/admin/licenses/{issued.view.license.id}/usage", headers=owner_headers)
    assert usage.json() == expected
    activations = await client.get(f"/v1/admin/licenses/{issued.view.license.id}/activations", headers=owner_headers)
    assert activations.json()[0]["latest_usage"]["seats_used"] == 7
    for _ in range(2):  # the same file again: the first import's answer, nothing imported twice
        replay = await client.post("/v1/admin/offline/usage-reports", json={"report": first}, headers=issuer)
        assert (replay.status_code, replay.json()) == (200, imported.json())
    activations = await client.get(f"/v1/admin/licenses/{issued.view.license.id}/activations", headers=owner_headers)
    assert activations.json()[0]["latest_usage"]["seats_used"] == 7
    other_first = _report(key, answer, 1, genesis, clock, seats=1)  # another report claiming the same link
    replaced = await client.post("/v1/admin/offline/usage-reports", json={"report": other_first}, headers=issuer)
    assert (replaced.status_code, replaced.json()["code"]) == (409, "offline_usage_replayed")
    third = _report(key, answer, 3, genesis, clock)
    gap = await client.post("/v1/admin/offline/usage-reports", json={"report": third}, headers=issuer)
    assert (gap.status_code, gap.json()["code"]) == (409, "offline_usage_chain_gap")
    stranger = _report(Ed25519PrivateKey.generate(), answer, 1, genesis, clock)
    unknown = await client.post("/v1/admin/offline/usage-reports", json={"report": stranger}, headers=issuer)
    assert (unknown.status_code, unknown.json()["code"]) == (404, "offline_unknown_binding")
    tampered = dict(first, seq=2)
    changed = await client.post("/v1/admin/offline/usage-reports", json={"report": tampered}, headers=issuer)
    assert (changed.status_code, changed.json()["code"]) == (400, "offline_bad_signature")


async def test_concurrent_imports_of_the_same_report_count_it_once_and_all_answer_the_same(
    runtime: Runtime, make_license: LicenseFactory, clock: MovableClock, actor: Any
) -> None:
    issued = await make_license()
    key = Ed25519PrivateKey.generate()
    async with runtime.session_factory() as session:
        answer = await service.respond(
            session,
            runtime=runtime,
            actor=actor,
            request=files.canonical_json(_request(key, issued.key, clock)),
            clock=clock,
        )
    as_json = {"activation_id": str(answer.activation_id), "license_id": str(answer.license_id)}
    report = files.canonical_json(
        _report(key, as_json, 1, files.genesis_hash(files.install_key_id(key.public_key())), clock)
    )

    async def attempt() -> service.UsageImported:
        async with runtime.session_factory() as session:
            return await service.import_usage(session, runtime=runtime, actor=actor, report=report, clock=clock)

    outcomes = await asyncio.gather(*(attempt() for _ in range(4)))
    assert outcomes[0].usage.licensed_seats == 4
    assert all(outcome == outcomes[0] for outcome in outcomes)
    assert await _imports_of(runtime, answer.license_id) == {"reports": 1, "imports": 1, "audit": 1, "seq": 1}


async def test_a_replay_of_a_file_imported_before_answers_were_kept_answers_the_usage_as_it_is_now(
    runtime: Runtime, make_license: LicenseFactory, clock: MovableClock, actor: Any
) -> None:
    issued = await make_license()
    key = Ed25519PrivateKey.generate()
    async with runtime.session_factory() as session:
        answer = await service.respond(
            session,
            runtime=runtime,
            actor=actor,
            request=files.canonical_json(_request(key, issued.key, clock)),
            clock=clock,
        )
    as_json = {"activation_id": str(answer.activation_id), "license_id": str(answer.license_id)}
    report = files.canonical_json(
        _report(key, as_json, 1, files.genesis_hash(files.install_key_id(key.public_key())), clock, seats=3)
    )
    async with runtime.session_factory() as session:
        first = await service.import_usage(session, runtime=runtime, actor=actor, report=report, clock=clock)
        await session.execute(update(OfflineUsageImport).values(answer=None))  # as rows written before 0005
        await session.commit()
        replay = await service.import_usage(session, runtime=runtime, actor=actor, report=report, clock=clock)
    assert replay == first
    assert await _imports_of(runtime, answer.license_id) == {"reports": 1, "imports": 1, "audit": 1, "seq": 1}


async def _imports_of(runtime: Runtime, license_id: Any) -> dict[str, int]:
    """What usage imports wrote for one license: usage reports, import records, audit events, the chain's head."""
    async with runtime.session_factory() as session:

        async def count(model: Any, *where: Any) -> int:
            return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)

        binding = await session.scalar(select(OfflineBinding).where(OfflineBinding.license_id == license_id))
        assert binding is not None
        return {
            "reports": await count(UsageReport, UsageReport.license_id == license_id),
            "imports": await count(OfflineUsageImport, OfflineUsageImport.binding_id == binding.id),
            "audit": await count(
                AuditEvent, AuditEvent.action == "offline.usage_imported", AuditEvent.target_id == str(license_id)
            ),
            "seq": binding.usage_seq,
        }


async def test_an_import_that_fails_before_its_commit_imports_nothing_and_the_same_file_imports_after(
    client: httpx.AsyncClient,
    runtime: Runtime,
    make_license: LicenseFactory,
    issuer: dict[str, str],
    clock: MovableClock,
) -> None:
    """The install's check-in is written in the import's transaction: when it fails, the answer is an error and
    nothing was imported, so sending the file again imports it (it used to commit first, answer 500, then refuse
    the retry as replayed)."""
    issued = await make_license()
    key = Ed25519PrivateKey.generate()
    answer = (
        await client.post(
            "/v1/admin/offline/responses", json={"request": _request(key, issued.key, clock)}, headers=issuer
        )
    ).json()
    report = _report(key, answer, 1, files.genesis_hash(files.install_key_id(key.public_key())), clock, seats=5)
    clock.advance(timedelta(hours=1))  # the import's check-in is later than the answer's

    def refuse_check_ins(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE LICENSES SET LAST_CHECK_IN_AT"):
            raise RuntimeError("the database refused the check-in (injected)")

    event.listen(runtime.engine.sync_engine, "before_cursor_execute", refuse_check_ins)
    try:
        failed = await client.post("/v1/admin/offline/usage-reports", json={"report": report}, headers=issuer)
    finally:
        event.remove(runtime.engine.sync_engine, "before_cursor_execute", refuse_check_ins)
    assert failed.status_code == 500
    assert await _imports_of(runtime, issued.view.license.id) == {"reports": 0, "imports": 0, "audit": 0, "seq": 0}
    retried = await client.post("/v1/admin/offline/usage-reports", json={"report": report}, headers=issuer)
    assert retried.status_code == 200, retried.text
    assert retried.json()["usage"]["licensed_seats"] == 5
    assert await _imports_of(runtime, issued.view.license.id) == {"reports": 1, "imports": 1, "audit": 1, "seq": 1}
    async with runtime.session_factory() as session:
        license = await session.get(License, issued.view.license.id)
    assert license is not None
    assert license.last_check_in_at == clock()  # the import was a check-in, in the same transaction


async def test_after_a_deactivation_the_same_install_asks_again_for_a_new_activation_and_chain(
    client: httpx.AsyncClient,
    make_license: LicenseFactory,
    issuer: dict[str, str],
    owner_headers: dict[str, str],
    clock: MovableClock,
) -> None:
    issued = await make_license()
    key = Ed25519PrivateKey.generate()
    genesis = files.genesis_hash(files.install_key_id(key.public_key()))
    first = (
        await client.post(
            "/v1/admin/offline/responses", json={"request": _request(key, issued.key, clock)}, headers=issuer
        )
    ).json()
    assert (
        await client.post(
            "/v1/admin/offline/usage-reports", json={"report": _report(key, first, 1, genesis, clock)}, headers=issuer
        )
    ).status_code == 200
    freed = await client.post(f"/v1/admin/activations/{first['activation_id']}/deactivate", headers=owner_headers)
    assert freed.status_code == 200
    again = await client.post(
        "/v1/admin/offline/responses", json={"request": _request(key, issued.key, clock)}, headers=issuer
    )
    assert again.status_code == 201, again.text
    second = again.json()
    assert second["activation_id"] != first["activation_id"]
    restarted = await client.post(
        "/v1/admin/offline/usage-reports", json={"report": _report(key, second, 1, genesis, clock)}, headers=issuer
    )
    assert restarted.status_code == 200, restarted.text


async def _written_for(runtime: Runtime, license_id: Any) -> dict[str, int]:
    """What an answer writes, counted for one license: activations, bindings, events and audit events."""
    async with runtime.session_factory() as session:

        async def count(model: Any, *where: Any) -> int:
            return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)

        return {
            "activations": await count(Activation, Activation.license_id == license_id),
            "live": await count(Activation, Activation.license_id == license_id, Activation.deactivated_at.is_(None)),
            "bindings": await count(OfflineBinding, OfflineBinding.license_id == license_id),
            "events": await count(
                Event,
                Event.license_id == license_id,
                Event.type.in_([EventType.ACTIVATION_CREATED.value, EventType.LICENSE_ACTIVATED.value]),
            ),
            "audit": await count(
                AuditEvent, AuditEvent.action == "offline.responded", AuditEvent.target_id == str(license_id)
            ),
        }


@pytest.mark.parametrize("failing", ["audit", "signing"])
async def test_an_answer_that_fails_after_the_activation_leaves_nothing_behind_and_the_seat_free(
    runtime: Runtime,
    make_license: LicenseFactory,
    clock: MovableClock,
    actor: Any,
    monkeypatch: pytest.MonkeyPatch,
    failing: str,
) -> None:
    issued = await make_license()  # one seat
    license_id = issued.view.license.id
    request = files.canonical_json(_request(Ed25519PrivateKey.generate(), issued.key, clock))

    def fail(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("disk full")

    if failing == "audit":  # the last write of the answer
        monkeypatch.setattr(service, "record_audit", fail)
    else:  # signing the file, after the binding was added
        monkeypatch.setattr(runtime.signer, "sign", fail)
    async with runtime.session_factory() as session:
        with pytest.raises(RuntimeError, match="disk full"):
            await service.respond(session, runtime=runtime, actor=actor, request=request, clock=clock)
    assert await _written_for(runtime, license_id) == {
        "activations": 0,
        "live": 0,
        "bindings": 0,
        "events": 0,
        "audit": 0,
    }
    async with runtime.session_factory() as session:
        license = await session.get(License, license_id)
        assert license is not None
        assert license.first_activated_at is None
    monkeypatch.undo()
    # The seat is free: another install (another fingerprint) takes it.
    other = files.canonical_json(_request(Ed25519PrivateKey.generate(), issued.key, clock, fingerprint="fp1:other"))
    async with runtime.session_factory() as session:
        answer = await service.respond(session, runtime=runtime, actor=actor, request=other, clock=clock)
    assert answer.created
    assert await _written_for(runtime, license_id) == {
        "activations": 1,
        "live": 1,
        "bindings": 1,
        "events": 2,
        "audit": 1,
    }


async def test_concurrent_answers_and_online_activations_from_two_servers_take_exactly_the_seats_there_are(
    runtime: Runtime, settings: Settings, make_license: LicenseFactory, clock: MovableClock, actor: Any
) -> None:
    """A second server on the same database has its own write gate and activation writer: on SQLite only the
    database's write lock (BEGIN IMMEDIATE) stands between its activations and this server's answers."""
    issued = await make_license(terms=LicenseTerms.model_validate({"max_activations": 4}))
    license_id = issued.view.license.id
    engine = create_engine(settings)
    other = Runtime(
        settings=settings,
        signer=Signer(KeyStore(settings.keys_dir, PASSPHRASE), refresh_seconds=0),
        engine=engine,
        session_factory=create_session_factory(engine),
        clock=clock,
    )

    async def answer(index: int) -> str:
        request = _request(Ed25519PrivateKey.generate(), issued.key, clock, fingerprint=f"fp1:offline-{index}")
        async with runtime.session_factory() as session:
            try:
                await service.respond(
                    session, runtime=runtime, actor=actor, request=files.canonical_json(request), clock=clock
                )
            except TooManyActivations:
                return "offline refused"
        return "offline"

    async def online(index: int) -> str:
        async with other.session_factory() as session:
            try:
                await deployments.activate(
                    session, runtime=other, license_key=issued.key, fingerprint=f"online-{index}", clock=clock
                )
            except TooManyActivations:
                return "online refused"
        return "online"

    try:
        outcomes = await asyncio.gather(*(x for i in range(8) for x in (answer(i), online(i))))
    finally:
        await other.close()
    answered = outcomes.count("offline")
    assert answered + outcomes.count("online") == 4
    assert outcomes.count("offline refused") + outcomes.count("online refused") == 12
    written = await _written_for(runtime, license_id)
    assert written == {"activations": 4, "live": 4, "bindings": answered, "events": 5, "audit": answered}


async def test_concurrent_answers_for_more_installs_than_seats_bind_exactly_the_seats(
    runtime: Runtime, make_license: LicenseFactory, clock: MovableClock, actor: Any
) -> None:
    issued = await make_license(terms=LicenseTerms.model_validate({"max_activations": 3}))
    requests = [
        files.canonical_json(
            _request(Ed25519PrivateKey.generate(), issued.key, clock, fingerprint=f"fp1:install-{index}")
        )
        for index in range(10)
    ]

    async def answer(request: bytes | str) -> str:
        async with runtime.session_factory() as session:
            try:
                await service.respond(session, runtime=runtime, actor=actor, request=request, clock=clock)
            except TooManyActivations:
                return "409"
        return "201"

    outcomes = await asyncio.gather(*(answer(request) for request in requests))
    assert (outcomes.count("201"), outcomes.count("409")) == (3, 7)
    written = await _written_for(runtime, issued.view.license.id)
    assert written == {"activations": 3, "live": 3, "bindings": 3, "events": 4, "audit": 3}


async def test_an_answer_waits_for_another_servers_activation_in_progress_and_counts_its_seat(
    runtime: Runtime, make_license: LicenseFactory, clock: MovableClock, actor: Any
) -> None:
    """Another server's activation holds the lock activations are serialised by (SQLite: the database write lock its
    writer takes with BEGIN IMMEDIATE; PostgreSQL: the license row, FOR UPDATE) while it takes the last seat."""
    issued = await make_license()  # one seat
    online = ActivationRequest(
        key_digest=runtime.hasher.digest(normalise_license_key(issued.key)),
        fingerprint="online-1",
        now=clock(),
        token_factory=deployments.generate_deployment_token,
    )
    request = files.canonical_json(_request(Ed25519PrivateKey.generate(), issued.key, clock))

    async def answer() -> str:
        async with runtime.session_factory() as session:
            try:
                await service.respond(session, runtime=runtime, actor=actor, request=request, clock=clock)
            except TooManyActivations:
                return "409"
        return "201"

    def activate_there(connection: Connection) -> None:
        session = Session(bind=connection, join_transaction_mode="rollback_only", autoflush=False)
        activate_in_transaction(session, runtime.hasher, online)

    async with runtime.engine.connect() as connection:
        await connection.begin()
        if runtime.settings.is_sqlite:
            await connection.exec_driver_sql("BEGIN IMMEDIATE")  # as the other server's activation writer begins
        await connection.run_sync(activate_there)
        answering = asyncio.ensure_future(answer())
        await asyncio.sleep(0.5)
        assert not answering.done()  # waiting for the lock, not counting seats past it
        await connection.commit()
    assert await answering == "409"
    written = await _written_for(runtime, issued.view.license.id)
    assert written == {"activations": 1, "live": 1, "bindings": 0, "events": 2, "audit": 0}
