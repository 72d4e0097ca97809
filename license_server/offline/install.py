"""The install's own key pair: made once per data directory, encrypted at rest, never leaves the machine.

The private key is ``DATA_DIR/install.key`` (PKCS#8 PEM, encrypted with ``LICENSE_SERVER_INSTALL_KEY_PASSPHRASE``,
or else with a random passphrase kept in ``DATA_DIR/install.passphrase``, mode 0600). Its public half goes into the
activation request; the vendor binds the license file to it, and usage reports are signed with it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
    load_pem_private_key,
)

PASSPHRASE_ENV = "LICENSE_SERVER_INSTALL_KEY_PASSPHRASE"  # noqa: S105 - the variable's name, not a secret
KEY_FILE = "install.key"
PASSPHRASE_FILE = "install.passphrase"  # noqa: S105 - a file name


class InstallKeyError(Exception):
    pass


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _passphrase(data_dir: Path, *, create: bool) -> bytes:
    from license_server.config import Settings  # the one settings object; read when needed, never at import

    from_env = Settings().install_key_passphrase
    if from_env is not None and from_env.get_secret_value():
        return from_env.get_secret_value().encode()
    path = data_dir / PASSPHRASE_FILE
    if path.exists():
        return path.read_bytes().strip()
    if not create:
        raise InstallKeyError(f"no passphrase: set {PASSPHRASE_ENV} or restore {path}")
    passphrase = secrets.token_urlsafe(32).encode()
    _write_private(path, passphrase + b"\n")
    return passphrase


def load_install_key(data_dir: Path) -> Ed25519PrivateKey:
    path = data_dir / KEY_FILE
    try:
        key = load_pem_private_key(path.read_bytes(), password=_passphrase(data_dir, create=False))
    except FileNotFoundError as exc:
        raise InstallKeyError(f"no install key in {data_dir}: run `license-server offline request` first") from exc
    except (OSError, ValueError, TypeError) as exc:
        raise InstallKeyError(f"cannot read the install key {path} (wrong passphrase?)") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise InstallKeyError(f"{path} is not an Ed25519 key")
    return key


def load_or_create_install_key(data_dir: Path) -> Ed25519PrivateKey:
    """The data directory's install key, made on first use (a second request reuses it: same binding)."""
    if (data_dir / KEY_FILE).exists():
        return load_install_key(data_dir)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(_passphrase(data_dir, create=True))
    )
    _write_private(data_dir / KEY_FILE, pem)
    return key
