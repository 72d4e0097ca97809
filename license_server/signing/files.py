"""Writing and reading key files: the atomic, never-overwriting writes and the permission checks both the key host
(``signing.root``) and the servers (``signing.keys``) use."""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from license_server.errors import KeyringError

# The PEM label of encrypted PKCS#8 (spelled in two parts so no full key armour line appears in the source tree).
ENCRYPTED_PKCS8_PEM = b"-----BEGIN " + b"ENCRYPTED PRIVATE KEY-----"


def write_private(path: Path, data: bytes) -> None:
    """Atomically create ``path`` with mode 0600; never overwrite."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if path exists: keys are never overwritten
    finally:
        tmp.unlink()


def write_public(path: Path, data: bytes, *, replace: bool = False) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    if replace:
        os.replace(tmp, path)
    else:
        try:
            os.link(tmp, path)
        finally:
            tmp.unlink()


def check_private_file(path: Path) -> bytes:
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise KeyringError(f"missing key file {path.name}; run `license-server init`") from exc
    except OSError as exc:
        raise KeyringError(f"cannot read key file {path.name}: {exc.strerror}") from exc
    if stat.S_IMODE(mode) & 0o077:
        raise KeyringError(f"{path.name} is accessible to other users; run `chmod 600` on it")
    return data


def require_encryption_choice(passphrase: bytes | None, allow_unencrypted: bool) -> None:
    if passphrase is None and not allow_unencrypted:
        raise KeyringError(
            "no key passphrase: set LICENSE_SERVER_KEY_PASSPHRASE or LICENSE_SERVER_KEY_PASSPHRASE_FILE "
            "(or LICENSE_SERVER_ALLOW_UNENCRYPTED_KEYS=1 for development only)"
        )


def serialize_private(key: Ed25519PrivateKey, passphrase: bytes | None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase is not None else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def parse_private(data: bytes, name: str, passphrase: bytes | None, *, allow_unencrypted: bool) -> Ed25519PrivateKey:
    encrypted = data.lstrip().startswith(ENCRYPTED_PKCS8_PEM)
    if not encrypted and not allow_unencrypted:
        raise KeyringError(
            f"{name} is not encrypted; refusing to use it "
            "(LICENSE_SERVER_ALLOW_UNENCRYPTED_KEYS=1 allows this in development)"
        )
    if encrypted and passphrase is None:
        raise KeyringError(f"{name} is encrypted but no passphrase is configured")
    try:
        key = serialization.load_pem_private_key(data, password=passphrase if encrypted else None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyringError(f"cannot decrypt {name}: wrong passphrase or damaged file") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyringError(f"{name} is not an Ed25519 key")
    return key


def load_private(path: Path, passphrase: bytes | None, *, allow_unencrypted: bool) -> Ed25519PrivateKey:
    return parse_private(check_private_file(path), path.name, passphrase, allow_unencrypted=allow_unencrypted)


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def parse_public_pem(data: bytes, name: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyringError(f"{name} is not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise KeyringError(f"{name} is not an Ed25519 key")
    return key


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """One writer at a time per key directory (CLI commands and servers may run side by side)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
