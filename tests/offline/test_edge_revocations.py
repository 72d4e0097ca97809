"""The edge and retired keys: it refuses license files signed by a retired key, and older revocation lists."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from license_server.edge.app import create_edge_app
from license_server.signing.keys import KeyStore
from license_server.signing.service import Signer
from license_server.verifier import Reason, VerificationError
from tests.keyring import make_keys, root_of, rotate
from tests.offline.conftest import PASSPHRASE
from tests.offline.test_edge import EdgeFactory, _write, bound_file, edge_clock, license_path, make_edge

__all__ = ["bound_file", "edge_clock", "license_path", "make_edge"]  # fixtures shared with test_edge


@pytest.fixture
def offline_store(tmp_path: Path) -> KeyStore:
    """A keyring of this test's own: these tests rotate and retire its keys."""
    return make_keys(tmp_path / "vendor-keys", PASSPHRASE)


@pytest.fixture
def offline_signer(offline_store: KeyStore) -> Signer:
    return Signer(offline_store, refresh_seconds=0)


def _retire_the_files_key(store: KeyStore) -> str:
    """The vendor rotates, then retires the key the current license files are signed with: the new list."""
    old = store.load().signer_kid
    rotate(store)
    return root_of(store).retire(old)


async def test_the_edge_refuses_to_start_on_a_file_whose_key_is_retired(
    make_edge: EdgeFactory, offline_store: KeyStore, tmp_path: Path
) -> None:
    revocations = tmp_path / "revocations.jws"
    _write(revocations, _retire_the_files_key(offline_store))
    edge = make_edge(revocations_path=revocations)
    with pytest.raises(VerificationError) as refused:
        await edge.start()
    assert refused.value.reason is Reason.KEY_RETIRED
    await edge.engine.dispose()


async def test_a_list_retiring_the_key_of_the_file_in_service_stops_it_being_served_until_a_renewal(
    make_edge: EdgeFactory,
    offline_store: KeyStore,
    license_path: Path,
    bound_file: Callable[..., str],
    tmp_path: Path,
) -> None:
    revocations = tmp_path / "revocations.jws"
    async with AsyncTestClient(create_edge_app(make_edge(revocations_path=revocations))) as client:
        assert (await client.get("/v1/license")).status_code == 200
        _write(revocations, _retire_the_files_key(offline_store))  # the vendor's list, dropped in place
        refused = await client.get("/v1/license")
        assert (refused.status_code, refused.json()["code"]) == (503, "license_file_refused")
        ready = await client.get("/health/ready")
        assert ready.status_code == 503
        assert "was retired" in ready.json()["checks"]["license_file"]
        _write(license_path, bound_file(expires_at="2033-01-01T00:00:00Z"))  # renewed: signed by the new key
        renewed = await client.get("/v1/license")
        assert renewed.status_code == 200
        assert (await client.get("/health/ready")).status_code == 200


async def test_the_edge_refuses_an_older_revocation_list_than_the_one_it_holds(
    make_edge: EdgeFactory, offline_store: KeyStore, tmp_path: Path
) -> None:
    """No replay: list 1 would un-retire the key list 2 retired; the held list survives restarts."""
    key_host = root_of(offline_store)
    # Three keys certified on the key host (the newest cannot be retired); the first two retired in turn.
    first, second, _ = (key_host.issue_key(bundle_passphrase=PASSPHRASE).kid for _ in range(3))
    list_1, list_2 = key_host.retire(first), key_host.retire(second)
    revocations = tmp_path / "revocations.jws"
    _write(revocations, list_2)
    async with AsyncTestClient(create_edge_app(make_edge(revocations_path=revocations))) as client:
        assert (await client.get("/v1/license")).status_code == 200
        _write(revocations, list_1 + "\n")  # replayed
        assert (await client.get("/v1/license")).status_code == 200
        ready = await client.get("/health/ready")
        assert "offered list refused" in ready.json()["checks"]["revocations"]
    restarted = make_edge(revocations_path=revocations)  # list 1 offered at start, list 2 held in edge-data
    assert restarted.revocations is not None
    assert restarted.revocations.sequence == 2
    assert restarted.revocations_error is not None
    assert "older" in restarted.revocations_error
    await restarted.engine.dispose()
