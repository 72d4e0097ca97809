"""Keyrings for tests, made the way `init --dev` makes them: a root in ``<keys>/root`` standing in for the key
host, and the server's keyring importing what it produces (bundles, revocation lists)."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from license_server.clock import Clock, utcnow
from license_server.signing.files import load_private
from license_server.signing.keys import KeyStore, create_dev_keys
from license_server.signing.root import ROOT_KEY, RootKeyStore
from license_server.verifier import RevocationList


def root_of(store: KeyStore, *, allow_unencrypted: bool = False) -> RootKeyStore:
    """The store's key host, on the store's clock."""
    return RootKeyStore(
        store.keys_dir / "root", store.passphrase, allow_unencrypted=allow_unencrypted, clock=store.clock
    )


def make_keys(
    keys_dir: Path, passphrase: bytes | None, *, clock: Clock = utcnow, allow_unencrypted: bool = False
) -> KeyStore:
    store = KeyStore(keys_dir, passphrase, allow_unencrypted=allow_unencrypted, clock=clock)
    assert create_dev_keys(store, root_of(store, allow_unencrypted=allow_unencrypted), passphrase=passphrase)
    return store


def rotate(store: KeyStore, *, allow_unencrypted: bool = False) -> str:
    """`keys rotate` on the key host, then `keys import` of the bundle on the server: the new signer's kid."""
    bundle = root_of(store, allow_unencrypted=allow_unencrypted).issue_key(bundle_passphrase=store.passphrase)
    return store.import_bundle(bundle.to_json())


def retire(store: KeyStore, kid: str) -> RevocationList:
    """`keys retire` on the key host, then the import of the list into the server's key directory."""
    token = root_of(store).retire(kid)
    revocations = store.check_revocations(token)
    store.import_revocations(revocations)
    return revocations


def root_private_key(store: KeyStore) -> Ed25519PrivateKey:
    return load_private(store.keys_dir / "root" / ROOT_KEY, store.passphrase, allow_unencrypted=False)
