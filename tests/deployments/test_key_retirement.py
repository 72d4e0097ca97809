"""A retired signing key stops being served by every replica within the poll cache bound.

Two runtimes share one database (SQLite and PostgreSQL), each with its own key directory, as two containers would.
The retirement is imported on one of them only; the other must learn it from the database.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import jwt
import pytest

from license_server.auth.tokens import Actor
from license_server.config import Settings
from license_server.db.session import create_engine, create_session_factory
from license_server.deployments.service import activate, poll
from license_server.errors import KeyringError, ValidationFailed
from license_server.runtime import Runtime
from license_server.signing.keys import KeyStore
from license_server.signing.service import Signer, import_revocation_list
from license_server.verifier import Verifier
from tests.conftest import PASSPHRASE, LicenseFactory, MovableClock
from tests.keyring import root_of

CACHE_SECONDS = 0.5


@pytest.fixture
def keys_dir(own_keys_dir: Path) -> Path:
    return own_keys_dir


def _kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


@pytest.fixture
async def replica(runtime: Runtime, tmp_path: Path, clock: MovableClock) -> AsyncIterator[Runtime]:
    """A second server on the same database, with its own copy of the server keys (no root: it is a server)."""
    keys = tmp_path / "replica-keys"
    shutil.copytree(runtime.settings.keys_dir, keys, ignore=shutil.ignore_patterns("root"))
    settings: Settings = runtime.settings.model_copy(update={"keys_dir": keys, "poll_cache_seconds": CACHE_SECONDS})
    engine = create_engine(settings)
    built = Runtime(
        settings=settings,
        signer=Signer(KeyStore(keys, PASSPHRASE), refresh_seconds=0),
        engine=engine,
        session_factory=create_session_factory(engine),
        clock=clock,
    )
    try:
        yield built
    finally:
        await built.close()


async def _import_on(runtime: Runtime, actor: Actor, token: str) -> None:
    async with runtime.session_factory() as session:
        await import_revocation_list(session, actor=actor, signer=runtime.signer, token=token)


async def test_a_retired_key_is_never_served_by_another_replica_after_the_poll_bound(
    runtime: Runtime, replica: Runtime, make_license: LicenseFactory, actor: Actor, clock: MovableClock
) -> None:
    issued = await make_license()
    activated = await activate(None, runtime=replica, license_key=issued.key, fingerprint="host-1", clock=clock)
    assert activated.token is not None
    first = await poll(replica, token=activated.token, if_none_match=None)
    old_kid = _kid(first.document.token)

    # Rotation: the key host's bundle is imported on both servers; the old key's documents stay good meanwhile.
    key_host = root_of(runtime.signer.store)
    bundle = key_host.issue_key(bundle_passphrase=PASSPHRASE).to_json()
    new_kid = runtime.signer.store.import_bundle(bundle)
    assert replica.signer.store.import_bundle(bundle) == new_kid
    await asyncio.sleep(CACHE_SECONDS)
    assert (await poll(replica, token=activated.token, if_none_match=first.document.etag)).not_modified

    # Retirement, imported on the first server only.
    await _import_on(runtime, actor, key_host.retire(old_kid))
    retired_at = time.monotonic()
    served: list[tuple[float, str, str]] = []
    while time.monotonic() < retired_at + CACHE_SECONDS + 0.3:
        answer = await poll(replica, token=activated.token, if_none_match=first.document.etag)
        served.append((time.monotonic() - retired_at, _kid(answer.document.token), answer.document.etag))
        await asyncio.sleep(0.05)
    late = [(kid, etag) for elapsed, kid, etag in served if elapsed > CACHE_SECONDS]
    assert late, served
    assert all(kid == new_kid and etag != first.document.etag for kid, etag in late), served

    # The replica's own key directory was never told; the database was enough.
    assert KeyStore(replica.settings.keys_dir, PASSPHRASE).load().revoked_kids == frozenset()
    verifier = Verifier(runtime.signer.keyring().root_public_key, clock=clock)
    revoking = verifier.with_revocations(runtime.signer.keyring().revocations or "")
    latest = await poll(replica, token=activated.token, if_none_match=None)
    assert revoking.verify(latest.document.token).kid == new_kid


async def test_a_replica_whose_signer_was_retired_refuses_to_sign_instead_of_serving_the_old_key(
    runtime: Runtime, replica: Runtime, make_license: LicenseFactory, actor: Actor, clock: MovableClock
) -> None:
    """The replica that missed the new bundle: its polls fail (503) rather than hand out a retired key's document."""
    issued = await make_license()
    activated = await activate(None, runtime=replica, license_key=issued.key, fingerprint="host-1", clock=clock)
    assert activated.token is not None
    old_kid = replica.signer.keyring().signer_kid
    key_host = root_of(runtime.signer.store)
    runtime.signer.store.import_bundle(key_host.issue_key(bundle_passphrase=PASSPHRASE).to_json())
    await _import_on(runtime, actor, key_host.retire(old_kid))
    await asyncio.sleep(CACHE_SECONDS + 0.1)
    with pytest.raises(KeyringError) as refused:
        await poll(replica, token=activated.token, if_none_match=None)
    assert refused.value.status_code == 503
    assert old_kid in refused.value.detail


async def test_an_older_revocation_list_is_refused_by_a_replica_that_never_held_the_newer_one(
    runtime: Runtime, replica: Runtime, actor: Actor
) -> None:
    """No replay across replicas: list 1 offered to a server whose own directory holds only list 0 is refused,
    because list 2 is in the shared database."""
    key_host = root_of(runtime.signer.store)
    first = runtime.signer.keyring().signer_kid
    bundle = key_host.issue_key(bundle_passphrase=PASSPHRASE).to_json()
    second = runtime.signer.store.import_bundle(bundle)
    replica.signer.store.import_bundle(bundle)
    third_bundle = key_host.issue_key(bundle_passphrase=PASSPHRASE).to_json()
    runtime.signer.store.import_bundle(third_bundle)
    replica.signer.store.import_bundle(third_bundle)
    list_1 = key_host.retire(first)
    list_2 = key_host.retire(second)
    await _import_on(runtime, actor, list_2)
    with pytest.raises(ValidationFailed) as refused:
        await _import_on(replica, actor, list_1)
    assert (refused.value.code, refused.value.field) == ("revocations_outdated", "revocations")
    # The list in force is unchanged, and importing it again is a no-op.
    await _import_on(replica, actor, list_2)
    assert replica.signer.keyring().revocation_list is not None
    assert replica.signer.keyring().revoked_kids == {first, second}
