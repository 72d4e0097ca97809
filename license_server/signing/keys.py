"""The keyring on disk.

Layout of ``keys_dir``::

    root.key                 root private key, encrypted PKCS#8 PEM (certifies issuing keys; never signs documents)
    root.pub                 root public key, PEM: the one thing offline verifiers pin
    issuing/<kid>.key        issuing private keys, encrypted PKCS#8 PEM
    issuing/<kid>.crt        X.509 certificate of the issuing key, signed by the root
    keyring.json             which key signs, and when each key was created or retired
    revocations.jws          root-signed list of retired key ids, for verifiers that cannot reach the server
    secret-hashing.key       HMAC key for hashing license keys and tokens at rest

Key ids are RFC 7638 thumbprints. Private files are created 0600 and refused when group- or world-accessible.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import NameOID

from license_server.clock import Clock, utcnow
from license_server.errors import KeyNotFound, KeyringError, ValidationFailed
from license_server.jose import KEY_REVOCATIONS_TYPE, b64url_encode, public_jwk, thumbprint

ROOT_KEY = "root.key"
ROOT_PUB = "root.pub"
KEYRING = "keyring.json"
REVOCATIONS = "revocations.jws"
SECRET_HASHING_KEY = "secret-hashing.key"  # noqa: S105 - a file name
ISSUING_DIR = "issuing"
CERTIFICATE_LIFETIME = timedelta(days=365 * 50)
# The PEM label of encrypted PKCS#8 (spelled in two parts so no full key armour line appears in the source tree).
ENCRYPTED_PKCS8_PEM = b"-----BEGIN " + b"ENCRYPTED PRIVATE KEY-----"


@dataclass(frozen=True)
class IssuingKey:
    kid: str
    public_key: Ed25519PublicKey
    certificate_der: bytes
    created_at: datetime
    retired_at: datetime | None
    private_key: Ed25519PrivateKey | None = field(default=None, repr=False)

    @property
    def is_retired(self) -> bool:
        return self.retired_at is not None

    def jwk(self) -> dict[str, object]:
        return {
            **public_jwk(self.public_key),
            "kid": self.kid,
            "use": "sig",
            "alg": "EdDSA",
            "x5c": [_b64(self.certificate_der)],
        }


@dataclass(frozen=True)
class Keyring:
    """A loaded, validated keyring: what the server signs with and publishes."""

    root_public_key: Ed25519PublicKey
    root_kid: str
    signer_kid: str
    keys: dict[str, IssuingKey]
    revocations: str | None
    secret_hashing_key: bytes = field(repr=False)

    @property
    def signer(self) -> IssuingKey:
        return self.keys[self.signer_kid]

    @property
    def published(self) -> list[IssuingKey]:
        return [key for key in self.keys.values() if not key.is_retired]

    def jwks(self) -> dict[str, object]:
        return {"keys": [key.jwk() for key in self.published]}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _write_private(path: Path, data: bytes) -> None:
    """Atomically create ``path`` with mode 0600; never overwrite."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.link(tmp, path)  # fails if path exists: keys are never overwritten
    tmp.unlink()


def _write_public(path: Path, data: bytes, *, replace: bool = False) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    if replace:
        os.replace(tmp, path)
    else:
        os.link(tmp, path)
        tmp.unlink()


def _check_private_file(path: Path) -> bytes:
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


def load_secret_hashing_key(keys_dir: Path) -> bytes:
    """The HMAC key for secrets hashed at rest; also the key material of secrets encrypted at rest."""
    return _check_private_file(keys_dir / SECRET_HASHING_KEY).strip()


class KeyStore:
    """Creates, loads, rotates and retires the keys in one directory."""

    def __init__(
        self,
        keys_dir: Path,
        passphrase: bytes | None,
        *,
        allow_unencrypted: bool = False,
        clock: Clock = utcnow,
    ) -> None:
        self.keys_dir = keys_dir
        self._passphrase = passphrase
        self._allow_unencrypted = allow_unencrypted
        self._clock = clock

    # -- creation ---------------------------------------------------------------------------------------------
    @property
    def is_initialised(self) -> bool:
        return (self.keys_dir / ROOT_KEY).exists()

    def initialise(self) -> bool:
        """Create the root key, a first issuing key and the hashing key. Returns False if they already exist."""
        with self._locked():
            if self.is_initialised:
                return False
            self._require_encryption_choice()
            (self.keys_dir / ISSUING_DIR).mkdir(parents=True, exist_ok=True)
            root = Ed25519PrivateKey.generate()
            _write_private(self.keys_dir / SECRET_HASHING_KEY, secrets.token_hex(32).encode())
            _write_public(
                self.keys_dir / ROOT_PUB,
                root.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                ),
            )
            kid = self._create_issuing_key(root)
            self._write_keyring(
                {"signer": kid, "keys": {kid: {"created_at": self._clock().isoformat(), "retired_at": None}}}
            )
            self._write_revocations(root, {})
            # The root key is written last: its presence is what marks the keyring as complete.
            _write_private(self.keys_dir / ROOT_KEY, self._serialize_private(root))
            return True

    def _require_encryption_choice(self) -> None:
        if self._passphrase is None and not self._allow_unencrypted:
            raise KeyringError(
                "no key passphrase: set LICENSE_SERVER_KEY_PASSPHRASE or LICENSE_SERVER_KEY_PASSPHRASE_FILE "
                "(or LICENSE_SERVER_ALLOW_UNENCRYPTED_KEYS=1 for development only)"
            )

    def _serialize_private(self, key: Ed25519PrivateKey) -> bytes:
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(self._passphrase)
            if self._passphrase is not None
            else serialization.NoEncryption()
        )
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)

    def _create_issuing_key(self, root: Ed25519PrivateKey) -> str:
        key = Ed25519PrivateKey.generate()
        kid = thumbprint(key.public_key())
        now = self._clock()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"issuing {kid}")])
        issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"root {thumbprint(root.public_key())}")])
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + CERTIFICATE_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(root, algorithm=None)
        )
        issuing = self.keys_dir / ISSUING_DIR
        issuing.mkdir(parents=True, exist_ok=True)
        _write_public(issuing / f"{kid}.crt", certificate.public_bytes(serialization.Encoding.PEM))
        _write_private(issuing / f"{kid}.key", self._serialize_private(key))
        return kid

    # -- loading ----------------------------------------------------------------------------------------------
    def _load_private(self, path: Path) -> Ed25519PrivateKey:
        data = _check_private_file(path)
        encrypted = data.lstrip().startswith(ENCRYPTED_PKCS8_PEM)
        if not encrypted and not self._allow_unencrypted:
            raise KeyringError(
                f"{path.name} is not encrypted; refusing to use it "
                "(LICENSE_SERVER_ALLOW_UNENCRYPTED_KEYS=1 allows this in development)"
            )
        if encrypted and self._passphrase is None:
            raise KeyringError(f"{path.name} is encrypted but no passphrase is configured")
        try:
            key = serialization.load_pem_private_key(data, password=self._passphrase if encrypted else None)
        except (ValueError, TypeError) as exc:
            raise KeyringError(f"cannot decrypt {path.name}: wrong passphrase or damaged file") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyringError(f"{path.name} is not an Ed25519 key")
        return key

    def _read_keyring(self) -> dict[str, object]:
        try:
            data = json.loads((self.keys_dir / KEYRING).read_text())
        except (OSError, ValueError) as exc:
            raise KeyringError("keyring.json is missing or damaged; run `license-server init`") from exc
        if not isinstance(data, dict) or not isinstance(data.get("keys"), dict):
            raise KeyringError("keyring.json is damaged")
        return data

    def _write_keyring(self, data: dict[str, object]) -> None:
        _write_public(self.keys_dir / KEYRING, json.dumps(data, indent=2).encode(), replace=True)

    def root_public_key(self) -> Ed25519PublicKey:
        try:
            key = serialization.load_pem_public_key((self.keys_dir / ROOT_PUB).read_bytes())
        except (OSError, ValueError) as exc:
            raise KeyringError("root.pub is missing or damaged") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise KeyringError("root.pub is not an Ed25519 key")
        return key

    def keyring_version(self) -> bytes:
        """A digest of keyring.json: changes on every rotation or retirement, unlike a coarse mtime."""
        try:
            return hashlib.sha256((self.keys_dir / KEYRING).read_bytes()).digest()
        except OSError:
            return b""

    def load(self) -> Keyring:
        """Load and check everything the server needs to sign: any problem is a KeyringError, never a crash."""
        if not self.is_initialised:
            raise KeyringError("no keys yet; run `license-server init`")
        root_public = self.root_public_key()
        # Loading the root private key proves the passphrase is right and the file is protected and encrypted.
        self._load_private(self.keys_dir / ROOT_KEY)
        meta = self._read_keyring()
        hashing_key = load_secret_hashing_key(self.keys_dir)
        keys: dict[str, IssuingKey] = {}
        raw_keys = meta["keys"]
        assert isinstance(raw_keys, dict)
        for kid, info in raw_keys.items():
            keys[kid] = self._load_issuing(kid, info, root_public)
        signer = meta.get("signer")
        if not isinstance(signer, str) or signer not in keys or keys[signer].is_retired:
            raise KeyringError("keyring.json names no usable signing key")
        revocations_path = self.keys_dir / REVOCATIONS
        revocations = revocations_path.read_text().strip() if revocations_path.exists() else None
        return Keyring(
            root_public_key=root_public,
            root_kid=thumbprint(root_public),
            signer_kid=signer,
            keys=keys,
            revocations=revocations,
            secret_hashing_key=hashing_key,
        )

    def _load_issuing(self, kid: str, info: dict[str, str | None], root: Ed25519PublicKey) -> IssuingKey:
        cert_path = self.keys_dir / ISSUING_DIR / f"{kid}.crt"
        try:
            certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
            root.verify(certificate.signature, certificate.tbs_certificate_bytes)
        except (OSError, ValueError, InvalidSignature) as exc:
            raise KeyringError(f"certificate of key {kid} is missing or not signed by the root") from exc
        public = certificate.public_key()
        if not isinstance(public, Ed25519PublicKey) or thumbprint(public) != kid:
            raise KeyringError(f"certificate of key {kid} does not match its key id")
        if not isinstance(info, dict):
            raise KeyringError(f"keyring.json entry of key {kid} is damaged")
        retired_at = info.get("retired_at")
        created = info.get("created_at")
        try:
            created_at = datetime.fromisoformat(created) if created else datetime.fromtimestamp(0, UTC)
            retired = datetime.fromisoformat(retired_at) if retired_at else None
        except (TypeError, ValueError) as exc:
            raise KeyringError(f"keyring.json has a damaged date for key {kid}") from exc
        private = None if retired_at else self._load_private(self.keys_dir / ISSUING_DIR / f"{kid}.key")
        if private is not None and thumbprint(private.public_key()) != kid:
            raise KeyringError(f"private key {kid} does not match its key id")
        return IssuingKey(
            kid=kid,
            public_key=public,
            certificate_der=certificate.public_bytes(serialization.Encoding.DER),
            created_at=created_at,
            retired_at=retired,
            private_key=private,
        )

    # -- rotation ---------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.keys_dir.mkdir(parents=True, exist_ok=True)
        with open(self.keys_dir / ".lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def rotate(self) -> str:
        """Create a new issuing key, certified by the root, and make it the signer. Older keys stay published."""
        with self._locked():
            self.load()  # refuse to rotate a keyring that would not load
            root = self._load_private(self.keys_dir / ROOT_KEY)
            meta = self._read_keyring()
            kid = self._create_issuing_key(root)
            keys = meta["keys"]
            assert isinstance(keys, dict)
            keys[kid] = {"created_at": self._clock().isoformat(), "retired_at": None}
            meta["signer"] = kid
            self._write_keyring(meta)
            return kid

    def retire(self, kid: str) -> None:
        """Stop publishing a key and add it to the root-signed revocation list. The signer cannot be retired."""
        with self._locked():
            meta = self._read_keyring()
            keys = meta["keys"]
            assert isinstance(keys, dict)
            if kid not in keys:
                raise KeyNotFound(f"no signing key with id {kid}", field="kid")
            if meta.get("signer") == kid:
                raise ValidationFailed(
                    "the current signing key cannot be retired; rotate first", field="kid", code="key_in_use"
                )
            if keys[kid].get("retired_at"):
                return
            keys[kid]["retired_at"] = self._clock().isoformat()
            root = self._load_private(self.keys_dir / ROOT_KEY)
            self._write_revocations(root, keys)
            self._write_keyring(meta)
            # The private half is no longer needed by anyone; removing it limits what a later leak exposes.
            (self.keys_dir / ISSUING_DIR / f"{kid}.key").unlink(missing_ok=True)

    def _write_revocations(self, root: Ed25519PrivateKey, keys: dict[str, dict[str, str | None]]) -> None:
        retired = sorted((kid, info["retired_at"]) for kid, info in keys.items() if info.get("retired_at"))
        claims = {
            "iat": int(self._clock().timestamp()),
            "retired": [{"kid": kid, "retired_at": at} for kid, at in retired],
        }
        token = jwt.encode(
            claims,
            root,
            algorithm="EdDSA",
            headers={"typ": KEY_REVOCATIONS_TYPE, "kid": thumbprint(root.public_key())},
        )
        _write_public(self.keys_dir / REVOCATIONS, token.encode(), replace=True)

    def export_public(self, out_dir: Path) -> list[Path]:
        """Write what verifiers need: root.pub, jwks.json and revocations.jws."""
        keyring = self.load()
        out_dir.mkdir(parents=True, exist_ok=True)
        written = [out_dir / ROOT_PUB, out_dir / "jwks.json", out_dir / REVOCATIONS]
        written[0].write_bytes((self.keys_dir / ROOT_PUB).read_bytes())
        written[1].write_text(json.dumps(keyring.jwks(), indent=2) + "\n")
        written[2].write_text((keyring.revocations or "") + "\n")
        return written


def resolve_passphrase(passphrase: str | None, passphrase_file: Path) -> bytes | None:
    """The passphrase from the environment, else from the passphrase file, else None."""
    if passphrase:
        return passphrase.encode()
    if passphrase_file.exists():
        data = _check_private_file(passphrase_file).strip()
        if not data:
            raise KeyringError(f"{passphrase_file.name} is empty")
        return data
    return None


def create_dev_passphrase_file(path: Path) -> bool:
    """Development convenience: a random passphrase in a 0600 file. Returns False if one exists."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_private(path, b64url_encode(secrets.token_bytes(32)).encode() + b"\n")
    return True
