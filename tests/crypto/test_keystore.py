"""The keyring on disk: creation, protection at rest, loading, rotation and retirement."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import shutil
import stat
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from license_server.errors import KeyNotFound, KeyringError, ValidationFailed
from license_server.jose import KEY_REVOCATIONS_TYPE, thumbprint
from license_server.signing.keys import (
    Keyring,
    KeyStore,
    create_dev_keys,
    create_dev_passphrase_file,
    resolve_passphrase,
)
from license_server.signing.root import RootKeyStore
from license_server.signing.service import Signer
from tests.crypto.conftest import NOW, PASSPHRASE, fixed_clock
from tests.keyring import make_keys, retire, root_of, rotate

ENCRYPTED_PEM = b"-----BEGIN " + b"ENCRYPTED PRIVATE KEY-----"


def _snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every regular file under ``directory``: its bytes and permission bits."""
    return {
        str(path.relative_to(directory)): (path.read_bytes(), stat.S_IMODE(path.stat().st_mode))
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _private_key_files(keys_dir: Path) -> list[Path]:
    return [keys_dir / "root" / "root.key", *sorted((keys_dir / "issuing").glob("*.key"))]


def _rfc7638_thumbprint(public_key: Ed25519PublicKey) -> str:
    """Computed here from the RFC text, independently of license_server.jose."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    canonical = '{"crv":"Ed25519","kty":"OKP","x":"' + x + '"}'
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def _published_kids(keyring: Keyring) -> list[str]:
    entries = keyring.jwks()["keys"]
    assert isinstance(entries, list)
    return [str(entry["kid"]) for entry in entries]


def _load_issuing_private(keys_dir: Path, kid: str) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key((keys_dir / "issuing" / f"{kid}.key").read_bytes(), PASSPHRASE)
    assert isinstance(key, Ed25519PrivateKey)
    return key


# -- initialise ---------------------------------------------------------------------------------------------------
def test_initialise_creates_every_file_of_the_layout(store: KeyStore) -> None:
    keys_dir = store.keys_dir
    kid = store.load().signer_kid
    for name in (
        "root.pub",
        "keyring.json",
        "revocations.jws",
        "secret-hashing.key",
        f"issuing/{kid}.key",
        f"issuing/{kid}.crt",
    ):
        assert (keys_dir / name).is_file(), name
    assert sorted(p.name for p in (keys_dir / "issuing").iterdir()) == [f"{kid}.crt", f"{kid}.key"]
    meta = json.loads((keys_dir / "keyring.json").read_text())
    assert meta["signer"] == kid
    assert list(meta["keys"]) == [kid]
    assert meta["keys"][kid]["retired_at"] is None
    # The root private key is on the key host (here keys/root/), never in the server's directory.
    assert not (keys_dir / "root.key").exists()
    assert sorted(p.name for p in (keys_dir / "root").iterdir() if not p.name.startswith(".")) == [
        "revocations.jws",
        "root-state.json",
        "root.key",
        "root.pub",
    ]
    # No temporary files are left behind by the atomic writes.
    assert not list(keys_dir.rglob("*.tmp"))


def test_private_files_are_created_mode_0600(store: KeyStore) -> None:
    for path in [*_private_key_files(store.keys_dir), store.keys_dir / "secret-hashing.key"]:
        assert _mode(path) == 0o600, path.name


def test_private_keys_are_encrypted_pkcs8_pem(store: KeyStore) -> None:
    for path in _private_key_files(store.keys_dir):
        data = path.read_bytes()
        assert data.startswith(ENCRYPTED_PEM), path.name
        with pytest.raises(TypeError):  # encrypted: cannot be loaded without the passphrase
            serialization.load_pem_private_key(data, password=None)
        assert isinstance(serialization.load_pem_private_key(data, password=PASSPHRASE), Ed25519PrivateKey)


def test_second_initialise_returns_false_and_changes_no_file(store: KeyStore) -> None:
    before = _snapshot(store.keys_dir)
    root = RootKeyStore(store.keys_dir / "root", PASSPHRASE)
    assert create_dev_keys(store, root, passphrase=PASSPHRASE) is False
    assert create_dev_keys(KeyStore(store.keys_dir, b"another passphrase"), root, passphrase=b"other") is False
    assert root.initialise() is False
    assert RootKeyStore(store.keys_dir / "root", None, allow_unencrypted=True).initialise() is False
    assert _snapshot(store.keys_dir) == before


def test_initialise_without_passphrase_or_allow_unencrypted_is_refused(keys_dir: Path) -> None:
    with pytest.raises(KeyringError, match="passphrase"):
        make_keys(keys_dir, None)
    assert not (keys_dir / "root" / "root.key").exists()
    assert not (keys_dir / "issuing").exists()


def test_unencrypted_keyring_is_allowed_only_when_asked_for(keys_dir: Path) -> None:
    """allow_unencrypted=True writes plain PKCS#8; loading it later without the flag is refused."""
    make_keys(keys_dir, None, allow_unencrypted=True)
    assert (keys_dir / "root" / "root.key").read_bytes().startswith(b"-----BEGIN " + b"PRIVATE KEY-----")
    KeyStore(keys_dir, None, allow_unencrypted=True).load()
    with pytest.raises(KeyringError, match="not encrypted"):
        KeyStore(keys_dir, None).load()
    with pytest.raises(KeyringError, match="not encrypted"):
        KeyStore(keys_dir, PASSPHRASE).load()


def test_kid_is_the_rfc7638_thumbprint_of_the_issuing_public_key(store: KeyStore) -> None:
    keyring = store.load()
    kid = keyring.signer_kid
    private = _load_issuing_private(store.keys_dir, kid)
    assert kid == _rfc7638_thumbprint(private.public_key())
    assert kid == _rfc7638_thumbprint(keyring.signer.public_key)
    assert keyring.root_kid == _rfc7638_thumbprint(store.root_public_key())


def test_thumbprint_matches_the_rfc8037_ed25519_test_vector() -> None:
    # RFC 8037 appendix A.2/A.3: public key x and its RFC 7638 thumbprint.
    raw = base64.urlsafe_b64decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
    assert thumbprint(Ed25519PublicKey.from_public_bytes(raw)) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_issuing_certificate_is_x509_signed_by_the_root_key(store: KeyStore, other_store: KeyStore) -> None:
    kid = store.load().signer_kid
    certificate = x509.load_pem_x509_certificate((store.keys_dir / "issuing" / f"{kid}.crt").read_bytes())
    store.root_public_key().verify(certificate.signature, certificate.tbs_certificate_bytes)
    public = certificate.public_key()
    assert isinstance(public, Ed25519PublicKey)
    assert thumbprint(public) == kid
    assert public == _load_issuing_private(store.keys_dir, kid).public_key()
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca is False
    # ... and it is not signed by an unrelated root.
    with pytest.raises(InvalidSignature):
        other_store.root_public_key().verify(certificate.signature, certificate.tbs_certificate_bytes)


# -- load refusals ------------------------------------------------------------------------------------------------
def test_load_succeeds_with_the_right_passphrase(store: KeyStore) -> None:
    keyring = KeyStore(store.keys_dir, PASSPHRASE).load()
    assert keyring.signer.private_key is not None
    assert len(keyring.secret_hashing_key) == 64


def test_load_refuses_a_wrong_passphrase(store: KeyStore) -> None:
    with pytest.raises(KeyringError, match="wrong passphrase"):
        KeyStore(store.keys_dir, b"not the passphrase").load()


def test_load_refuses_a_missing_passphrase_when_keys_are_encrypted(store: KeyStore) -> None:
    with pytest.raises(KeyringError, match="no passphrase"):
        KeyStore(store.keys_dir, None).load()
    with pytest.raises(KeyringError, match="no passphrase"):
        KeyStore(store.keys_dir, None, allow_unencrypted=True).load()


def test_load_refuses_an_unencrypted_issuing_key_unless_allowed(store: KeyStore) -> None:
    kid = store.load().signer_kid
    path = store.keys_dir / "issuing" / f"{kid}.key"
    plain = _load_issuing_private(store.keys_dir, kid).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.unlink()
    path.write_bytes(plain)
    path.chmod(0o600)
    with pytest.raises(KeyringError, match="not encrypted"):
        KeyStore(store.keys_dir, PASSPHRASE).load()
    assert KeyStore(store.keys_dir, PASSPHRASE, allow_unencrypted=True).load().signer_kid == kid


@pytest.mark.parametrize("name", ["issuing", "secret-hashing.key"])
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_load_refuses_a_private_file_accessible_to_group_or_world(store: KeyStore, name: str, mode: int) -> None:
    path = store.keys_dir / name
    if name == "issuing":
        path = next(path.glob("*.key"))
    path.chmod(mode)
    with pytest.raises(KeyringError, match="accessible to other users"):
        KeyStore(store.keys_dir, PASSPHRASE).load()
    path.chmod(0o600)
    KeyStore(store.keys_dir, PASSPHRASE).load()


def test_load_refuses_a_missing_issuing_key_file(store: KeyStore) -> None:
    kid = store.load().signer_kid
    (store.keys_dir / "issuing" / f"{kid}.key").unlink()
    with pytest.raises(KeyringError, match="missing key file"):
        KeyStore(store.keys_dir, PASSPHRASE).load()


def test_load_refuses_a_missing_secret_hashing_key(store: KeyStore) -> None:
    (store.keys_dir / "secret-hashing.key").unlink()
    with pytest.raises(KeyringError, match="missing key file"):
        KeyStore(store.keys_dir, PASSPHRASE).load()


def test_load_needs_no_root_private_key(store: KeyStore) -> None:
    """Key custody: the server's keyring loads and signs with the root private key nowhere on the machine."""
    (store.keys_dir / "root" / "root.key").unlink()
    keyring = KeyStore(store.keys_dir, PASSPHRASE).load()
    assert keyring.signer.private_key is not None
    assert Signer(KeyStore(store.keys_dir, PASSPHRASE), refresh_seconds=0).sign({"ver": 1})


def test_load_refuses_an_unreadable_key_file(store: KeyStore) -> None:
    """A key path that cannot be read (here: a directory, which even root cannot read as a file)."""
    path = store.keys_dir / "secret-hashing.key"
    path.unlink()
    path.mkdir(mode=0o700)
    with pytest.raises(KeyringError, match="cannot read key file"):
        KeyStore(store.keys_dir, PASSPHRASE).load()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a mode-000 file")
def test_load_refuses_a_key_file_without_read_permission(store: KeyStore) -> None:
    (store.keys_dir / "secret-hashing.key").chmod(0o000)
    with pytest.raises(KeyringError, match="cannot read key file"):
        KeyStore(store.keys_dir, PASSPHRASE).load()


def test_load_refuses_a_damaged_private_key(store: KeyStore) -> None:
    kid = store.load().signer_kid
    path = store.keys_dir / "issuing" / f"{kid}.key"
    data = bytearray(path.read_bytes())
    data[60] = ord("A") if data[60] != ord("A") else ord("B")
    path.write_bytes(bytes(data))
    with pytest.raises(KeyringError):
        KeyStore(store.keys_dir, PASSPHRASE).load()


def test_load_refuses_an_issuing_key_swapped_for_another_one(store: KeyStore) -> None:
    """A private key file whose key does not match its kid (the name) is refused."""
    kid = store.load().signer_kid
    path = store.keys_dir / "issuing" / f"{kid}.key"
    path.unlink()
    path.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSPHRASE),
        )
    )
    path.chmod(0o600)
    with pytest.raises(KeyringError, match="does not match"):
        KeyStore(store.keys_dir, PASSPHRASE).load()


def test_load_refuses_an_issuing_certificate_not_signed_by_the_root(store: KeyStore, other_store: KeyStore) -> None:
    kid = store.load().signer_kid
    foreign = other_store.load().signer_kid
    (store.keys_dir / "issuing" / f"{kid}.crt").write_bytes(
        (other_store.keys_dir / "issuing" / f"{foreign}.crt").read_bytes()
    )
    with pytest.raises(KeyringError, match="not signed by the root"):
        KeyStore(store.keys_dir, PASSPHRASE).load()


def _damage_keyring(keys_dir: Path, damage: str, kid: str) -> None:
    path = keys_dir / "keyring.json"
    meta = json.loads(path.read_text())
    if damage == "truncated":
        path.write_text(path.read_text()[:20])
        return
    if damage == "not utf-8":
        path.write_bytes(b"\xff\xfe{}")
        return
    if damage == "empty":
        path.write_text("")
        return
    if damage == "json list":
        path.write_text("[]")
        return
    if damage == "keys not an object":
        meta["keys"] = [kid]
    elif damage == "no signer":
        del meta["signer"]
    elif damage == "unknown signer":
        meta["signer"] = "not-a-key-id"
    elif damage == "key entry not an object":
        meta["keys"][kid] = "garbage"
    elif damage == "created_at not a date":
        meta["keys"][kid]["created_at"] = "yesterday"
    elif damage == "unknown key id":
        meta["keys"]["no-such-kid"] = {"created_at": None, "retired_at": None}
    else:  # pragma: no cover
        raise AssertionError(damage)
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "damage",
    [
        "truncated",
        "not utf-8",
        "empty",
        "json list",
        "keys not an object",
        "no signer",
        "unknown signer",
        "key entry not an object",
        "created_at not a date",
        "unknown key id",
    ],
)
def test_load_refuses_a_damaged_keyring_json_with_keyring_error(store: KeyStore, damage: str) -> None:
    _damage_keyring(store.keys_dir, damage, store.load().signer_kid)
    with pytest.raises(KeyringError):
        KeyStore(store.keys_dir, PASSPHRASE).load()


def test_load_refuses_a_missing_keyring_json(store: KeyStore) -> None:
    (store.keys_dir / "keyring.json").unlink()
    with pytest.raises(KeyringError, match=r"keyring\.json"):
        KeyStore(store.keys_dir, PASSPHRASE).load()


def test_load_of_an_empty_directory_says_there_are_no_keys(keys_dir: Path) -> None:
    with pytest.raises(KeyringError, match="no keys yet"):
        KeyStore(keys_dir, PASSPHRASE).load()


# -- rotate and retire --------------------------------------------------------------------------------------------
def test_rotate_makes_a_new_signer_and_keeps_the_old_key_published(store: KeyStore) -> None:
    old = store.load().signer_kid
    new = rotate(store)
    assert new != old
    keyring = KeyStore(store.keys_dir, PASSPHRASE).load()
    assert keyring.signer_kid == new
    assert set(_published_kids(keyring)) == {old, new}
    assert _mode(store.keys_dir / "issuing" / f"{new}.key") == 0o600
    assert (store.keys_dir / "issuing" / f"{new}.key").read_bytes().startswith(ENCRYPTED_PEM)
    assert new == _rfc7638_thumbprint(_load_issuing_private(store.keys_dir, new).public_key())


def test_jwks_entries_are_public_ed25519_jwks_with_a_root_certificate(store: KeyStore) -> None:
    rotate(store)
    keyring = store.load()
    entries = keyring.jwks()["keys"]
    assert isinstance(entries, list)
    for entry in entries:
        assert set(entry) == {"kty", "crv", "x", "kid", "use", "alg", "x5c"}
        assert (entry["kty"], entry["crv"], entry["alg"], entry["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")
        assert "d" not in entry
        certificate = x509.load_der_x509_certificate(base64.b64decode(entry["x5c"][0]))
        keyring.root_public_key.verify(certificate.signature, certificate.tbs_certificate_bytes)
        public = certificate.public_key()
        assert isinstance(public, Ed25519PublicKey)
        assert thumbprint(public) == entry["kid"]


def test_retire_unpublishes_the_key_deletes_its_private_half_and_lists_it_as_revoked(store: KeyStore) -> None:
    old = store.load().signer_kid
    new = rotate(store)
    retire(store, old)
    keyring = KeyStore(store.keys_dir, PASSPHRASE).load()
    assert _published_kids(keyring) == [new]
    assert keyring.keys[old].is_retired
    assert keyring.keys[old].private_key is None
    assert not (store.keys_dir / "issuing" / f"{old}.key").exists()
    assert (store.keys_dir / "issuing" / f"{old}.crt").exists()
    assert (store.keys_dir / "issuing" / f"{new}.key").exists()

    token = (store.keys_dir / "revocations.jws").read_text().strip()
    assert keyring.revocations == token
    header = jwt.get_unverified_header(token)
    assert header["typ"] == KEY_REVOCATIONS_TYPE == "key-revocations+jwt"
    assert header["alg"] == "EdDSA"
    assert header["kid"] == keyring.root_kid
    claims = jwt.decode(token, store.root_public_key(), algorithms=["EdDSA"], options={"verify_iat": False})
    assert [item["kid"] for item in claims["retired"]] == [old]
    assert claims["retired"][0]["retired_at"] == NOW.isoformat()


def test_initial_revocation_list_is_root_signed_and_empty(store: KeyStore) -> None:
    token = (store.keys_dir / "revocations.jws").read_text().strip()
    assert jwt.get_unverified_header(token)["typ"] == KEY_REVOCATIONS_TYPE
    assert (
        jwt.decode(token, store.root_public_key(), algorithms=["EdDSA"], options={"verify_iat": False})["retired"] == []
    )


def test_retiring_twice_is_a_no_op(store: KeyStore) -> None:
    old = store.load().signer_kid
    rotate(store)
    retire(store, old)
    before = _snapshot(store.keys_dir)
    retire(store, old)
    assert _snapshot(store.keys_dir) == before


def test_retiring_the_current_signer_is_refused_as_key_in_use(store: KeyStore) -> None:
    kid = store.load().signer_kid
    before = _snapshot(store.keys_dir)
    with pytest.raises(ValidationFailed) as caught:
        retire(store, kid)
    assert caught.value.code == "key_in_use"
    assert caught.value.field == "kid"
    assert _snapshot(store.keys_dir) == before


def test_retiring_an_unknown_kid_raises_key_not_found(store: KeyStore) -> None:
    with pytest.raises(KeyNotFound) as caught:
        retire(store, "no-such-key")
    assert caught.value.code == "key_not_found"


def _server_files(keys_dir: Path) -> dict[str, tuple[bytes, int]]:
    return {name: value for name, value in _snapshot(keys_dir).items() if not name.startswith("root/")}


def test_a_bundle_whose_key_this_server_cannot_decrypt_is_refused_and_nothing_is_written(store: KeyStore) -> None:
    bundle = root_of(store).issue_key(bundle_passphrase=b"the key host's own passphrase")
    before = _server_files(store.keys_dir)
    with pytest.raises(ValidationFailed) as caught:
        store.import_bundle(bundle.to_json())
    assert caught.value.code == "invalid_key_bundle"
    assert _server_files(store.keys_dir) == before
    # Given the bundle's passphrase, the key is re-encrypted under the server's own.
    assert store.import_bundle(bundle.to_json(), bundle_passphrase=b"the key host's own passphrase") == bundle.kid
    assert KeyStore(store.keys_dir, PASSPHRASE).load().signer.private_key is not None


def test_a_bundle_from_another_root_is_refused_as_foreign_root(store: KeyStore, other_store: KeyStore) -> None:
    foreign = root_of(other_store).issue_key(bundle_passphrase=PASSPHRASE)
    before = _server_files(store.keys_dir)
    with pytest.raises(ValidationFailed) as caught:
        store.import_bundle(foreign.to_json())
    assert caught.value.code == "foreign_root"
    assert _server_files(store.keys_dir) == before


def test_a_key_made_on_the_server_is_certified_without_its_private_half_leaving(store: KeyStore) -> None:
    """`keys request` → `keys issue-cert` → `keys import`: the bundle carries only the certificate."""
    kid, public = store.request_key()
    bundle = root_of(store).issue_certificate(serialization.load_pem_public_key(public))  # type: ignore[arg-type]
    assert bundle.private_key_pem is None
    assert b"PRIVATE" not in bundle.to_json()
    assert store.import_bundle(bundle.to_json()) == kid
    assert KeyStore(store.keys_dir, PASSPHRASE).load().signer_kid == kid


def test_a_revocation_list_that_retires_the_servers_signer_is_refused(store: KeyStore) -> None:
    old = store.load().signer_kid
    root = root_of(store)
    root.issue_key(bundle_passphrase=PASSPHRASE)  # rotated on the key host, but not imported here
    token = root.retire(old)
    with pytest.raises(ValidationFailed) as caught:
        store.check_revocations(token)
    assert caught.value.code == "key_in_use"


def test_an_older_revocation_list_is_refused_and_changes_nothing(store: KeyStore) -> None:
    """No replay: the list with number 1 cannot replace the list with number 2 (it would un-retire a key)."""
    first = store.load().signer_kid
    second = rotate(store)
    rotate(store)
    older = retire(store, first)
    newer = retire(store, second)
    assert (older.sequence, newer.sequence) == (1, 2)
    before = _server_files(store.keys_dir)
    with pytest.raises(ValidationFailed) as caught:
        store.check_revocations(older.token)
    assert caught.value.code == "revocations_outdated"
    store.import_revocations(older)  # even unchecked, an older list changes nothing
    assert _server_files(store.keys_dir) == before
    assert store.load().revocation_list == newer


def test_a_revocation_list_signed_by_another_root_is_refused(store: KeyStore, other_store: KeyStore) -> None:
    foreign = (other_store.keys_dir / "revocations.jws").read_text()
    with pytest.raises(ValidationFailed) as caught:
        store.check_revocations(foreign)
    assert caught.value.code == "invalid_revocations"


def test_a_root_key_left_on_a_server_by_an_older_version_moves_to_the_key_host(store: KeyStore) -> None:
    """The upgrade path (`init --dev`, `keys root adopt`): the root leaves the server and keeps certifying."""
    root_dir = store.keys_dir / "root"
    (store.keys_dir / "root.key").write_bytes((root_dir / "root.key").read_bytes())  # the old layout
    (store.keys_dir / "root.key").chmod(0o600)
    shutil.rmtree(root_dir)
    signer = store.load().signer_kid
    assert store.holds_legacy_root_key
    adopted = RootKeyStore(root_dir, PASSPHRASE, clock=fixed_clock(NOW))
    assert adopted.adopt_legacy_root(store.keys_dir) is True
    assert not store.holds_legacy_root_key
    assert _mode(root_dir / "root.key") == 0o600
    assert json.loads((root_dir / "root-state.json").read_text())["current"] == signer
    new = rotate(store)
    assert retire(store, signer).kids == {signer}
    assert store.load().signer_kid == new
    assert adopted.adopt_legacy_root(store.keys_dir) is False


# -- the signer notices rotations by other processes --------------------------------------------------------------
def test_signer_picks_up_a_rotation_made_by_another_keystore(store: KeyStore) -> None:
    signer = Signer(KeyStore(store.keys_dir, PASSPHRASE), refresh_seconds=0)
    old = signer.keyring().signer_kid
    new = rotate(KeyStore(store.keys_dir, PASSPHRASE))
    assert new != old
    assert signer.keyring().signer_kid == new
    assert jwt.get_unverified_header(signer.sign({"ver": 1}))["kid"] == new


def test_signer_picks_up_a_rotation_even_when_keyring_mtime_is_unchanged(store: KeyStore) -> None:
    """Coarse file timestamps (1 s, 2 s or one kernel tick) must not hide a rotation from the signer."""
    signer = Signer(KeyStore(store.keys_dir, PASSPHRASE), refresh_seconds=0)
    old = signer.keyring().signer_kid
    keyring_json = store.keys_dir / "keyring.json"
    before = keyring_json.stat()
    new = rotate(KeyStore(store.keys_dir, PASSPHRASE))
    os.utime(keyring_json, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert new != old
    assert signer.keyring().signer_kid == new


def test_signer_with_a_refresh_interval_uses_its_cached_keyring(store: KeyStore) -> None:
    signer = Signer(KeyStore(store.keys_dir, PASSPHRASE), refresh_seconds=3600)
    old = signer.keyring().signer_kid
    new = rotate(store)
    assert signer.keyring().signer_kid == old
    assert signer.reload().signer_kid == new


def test_a_keyring_that_cannot_be_read_keeps_the_last_good_one_and_warns_once_per_streak(
    store: KeyStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A transient read failure (a volume remounting, a half-copied file) must not fail every request."""
    signer = Signer(KeyStore(store.keys_dir, PASSPHRASE), refresh_seconds=0)
    kid = signer.keyring().signer_kid
    keyring_json = store.keys_dir / "keyring.json"
    good = keyring_json.read_bytes()
    caplog.set_level(logging.WARNING, logger="license_server.signing")

    def warnings() -> int:
        return sum(1 for record in caplog.records if record.levelno == logging.WARNING)

    keyring_json.write_text("{")
    for _ in range(3):
        assert jwt.get_unverified_header(signer.sign({"ver": 1}))["kid"] == kid
    assert warnings() == 1
    assert signer.reload_error is not None
    assert "keyring.json" in signer.reload_error
    keyring_json.write_bytes(good)
    assert signer.keyring().signer_kid == kid
    assert signer.reload_error is None
    keyring_json.unlink()  # a second streak is reported again
    assert jwt.get_unverified_header(signer.sign({"ver": 1}))["kid"] == kid
    assert warnings() == 2
    # A process starting now has no last good keyring to fall back on: it refuses, as before.
    with pytest.raises(KeyringError):
        Signer(KeyStore(store.keys_dir, PASSPHRASE), refresh_seconds=0).keyring()


# -- passphrases --------------------------------------------------------------------------------------------------
def test_resolve_passphrase_prefers_the_environment_value(tmp_path: Path) -> None:
    path = tmp_path / "passphrase"
    assert create_dev_passphrase_file(path)
    assert resolve_passphrase("from-env", path) == b"from-env"


def test_resolve_passphrase_reads_and_strips_the_file(tmp_path: Path) -> None:
    path = tmp_path / "passphrase"
    path.write_bytes(b"  s3cret \n")
    path.chmod(0o600)
    assert resolve_passphrase(None, path) == b"s3cret"
    assert resolve_passphrase("", path) == b"s3cret"


def test_resolve_passphrase_is_none_without_value_or_file(tmp_path: Path) -> None:
    assert resolve_passphrase(None, tmp_path / "absent") is None


def test_resolve_passphrase_refuses_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "passphrase"
    path.write_bytes(b" \n")
    path.chmod(0o600)
    with pytest.raises(KeyringError, match="empty"):
        resolve_passphrase(None, path)


def test_resolve_passphrase_refuses_a_group_or_world_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "passphrase"
    path.write_bytes(b"s3cret\n")
    path.chmod(0o644)
    with pytest.raises(KeyringError, match="accessible to other users"):
        resolve_passphrase(None, path)


def test_create_dev_passphrase_file_is_0600_random_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "passphrase"
    assert create_dev_passphrase_file(path) is True
    assert _mode(path) == 0o600
    content = path.read_bytes()
    assert content.endswith(b"\n")
    assert len(base64.urlsafe_b64decode(content.strip() + b"=")) == 32
    assert create_dev_passphrase_file(path) is False
    assert path.read_bytes() == content
    other = tmp_path / "other-passphrase"
    assert create_dev_passphrase_file(other) is True
    assert other.read_bytes() != content


def test_dev_passphrase_file_encrypts_and_unlocks_a_keyring(tmp_path: Path) -> None:
    path = tmp_path / "passphrase"
    create_dev_passphrase_file(path)
    passphrase = resolve_passphrase(None, path)
    assert passphrase is not None
    keys_dir = tmp_path / "keys"
    make_keys(keys_dir, passphrase, clock=fixed_clock(NOW))
    assert (keys_dir / "root" / "root.key").read_bytes().startswith(ENCRYPTED_PEM)
    assert KeyStore(keys_dir, resolve_passphrase(None, path)).load().signer.private_key is not None
    shutil.rmtree(keys_dir)
