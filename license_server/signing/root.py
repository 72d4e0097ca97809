"""The root key, on the key host: it certifies issuing keys and signs revocation lists, and nothing else.

Servers never hold it (docs/keys.md). Everything it produces is a file a server imports: a key bundle (an issuing
key's certificate, with the key itself encrypted, or without it when the server made the key) and a revocation list.

Layout of the root directory (``keys/root/`` in development; a separate, offline machine in production)::

    root.key          root private key, encrypted PKCS#8 PEM (0600)
    root.pub          root public key, PEM: what verifiers pin and servers are given
    root-state.json   every key this root certified, which is current, and the last revocation list's number
    revocations.jws   the last revocation list signed, to hand out again
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import NameOID

from license_server.clock import Clock, utcnow
from license_server.errors import KeyNotFound, KeyringError, ValidationFailed
from license_server.jose import KEY_REVOCATIONS_TYPE, thumbprint
from license_server.signing.files import (
    load_private,
    locked,
    parse_public_pem,
    public_pem,
    require_encryption_choice,
    serialize_private,
    write_private,
    write_public,
)

ROOT_KEY = "root.key"
ROOT_PUB = "root.pub"
ROOT_STATE = "root-state.json"
REVOCATIONS = "revocations.jws"
BUNDLE_TYPE = "license-server-key-bundle"
CERTIFICATE_LIFETIME = timedelta(days=365 * 50)


@dataclass(frozen=True)
class KeyBundle:
    """What `keys rotate` and `keys issue-cert` hand to the servers (JSON; see ``to_json``)."""

    kid: str
    created_at: str
    root_public_pem: str
    certificate_pem: str
    private_key_pem: str | None  # None: the server made the key itself (`keys request`) and keeps it
    revocations: str

    def to_json(self) -> bytes:
        return (
            json.dumps(
                {
                    "type": BUNDLE_TYPE,
                    "version": 1,
                    "kid": self.kid,
                    "created_at": self.created_at,
                    "root_public_key": self.root_public_pem,
                    "certificate": self.certificate_pem,
                    "private_key": self.private_key_pem,
                    "revocations": self.revocations,
                },
                indent=2,
            ).encode()
            + b"\n"
        )

    @classmethod
    def from_json(cls, data: bytes) -> KeyBundle:
        try:
            raw = json.loads(data)
        except ValueError as exc:
            raise ValidationFailed("the key bundle is not JSON", field="bundle", code="invalid_key_bundle") from exc
        if not isinstance(raw, dict) or raw.get("type") != BUNDLE_TYPE or raw.get("version") != 1:
            raise ValidationFailed("not a version 1 key bundle", field="bundle", code="invalid_key_bundle")
        fields = ("kid", "created_at", "root_public_key", "certificate", "revocations")
        if not all(isinstance(raw.get(name), str) for name in fields) or not isinstance(
            raw.get("private_key"), str | None
        ):
            raise ValidationFailed("the key bundle is missing a field", field="bundle", code="invalid_key_bundle")
        return cls(
            kid=raw["kid"],
            created_at=raw["created_at"],
            root_public_pem=raw["root_public_key"],
            certificate_pem=raw["certificate"],
            private_key_pem=raw["private_key"],
            revocations=raw["revocations"],
        )


def certify(root: Ed25519PrivateKey, public_key: Ed25519PublicKey, *, clock: Clock = utcnow) -> x509.Certificate:
    """An X.509 end-entity certificate of an issuing key: digital signatures only, never a CA."""
    kid = thumbprint(public_key)
    now = clock()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"issuing {kid}")])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"root {thumbprint(root.public_key())}")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer)
        .public_key(public_key)
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


class RootKeyStore:
    """The key host's directory: creates the root, certifies issuing keys, signs numbered revocation lists."""

    def __init__(
        self,
        root_dir: Path,
        passphrase: bytes | None,
        *,
        allow_unencrypted: bool = False,
        clock: Clock = utcnow,
    ) -> None:
        self.root_dir = root_dir
        self._passphrase = passphrase
        self._allow_unencrypted = allow_unencrypted
        self._clock = clock

    @property
    def is_initialised(self) -> bool:
        return (self.root_dir / ROOT_KEY).exists()

    def initialise(self) -> bool:
        """Create the root key and an empty revocation list (number 0). False if a root exists already."""
        with locked(self.root_dir):
            if self.is_initialised:
                return False
            require_encryption_choice(self._passphrase, self._allow_unencrypted)
            self.root_dir.chmod(0o700)
            root = Ed25519PrivateKey.generate()
            write_public(self.root_dir / ROOT_PUB, public_pem(root.public_key()), replace=True)
            state: dict[str, Any] = {"sequence": 0, "current": None, "keys": {}}
            self._sign_revocations(root, state)
            self._write_state(state)
            # The private key is written last: its presence is what marks the root directory as complete.
            write_private(self.root_dir / ROOT_KEY, serialize_private(root, self._passphrase))
            return True

    def adopt_legacy_root(self, server_keys_dir: Path) -> bool:
        """Move a root private key that an older version kept in a server's key directory here, with a state
        built from that keyring (its keys certified, its signer current). False when there is nothing to move."""
        legacy = server_keys_dir / ROOT_KEY
        with locked(self.root_dir):
            if self.is_initialised or not legacy.exists():
                return False
            self.root_dir.chmod(0o700)
            try:
                meta = json.loads((server_keys_dir / "keyring.json").read_text())
            except (OSError, ValueError) as exc:
                raise KeyringError("keyring.json is missing or damaged; cannot move the old root key") from exc
            keys = {
                kid: {"certified_at": info.get("created_at"), "retired_at": info.get("retired_at")}
                for kid, info in meta.get("keys", {}).items()
            }
            state: dict[str, Any] = {"sequence": 0, "current": meta.get("signer"), "keys": keys}
            root = load_private(legacy, self._passphrase, allow_unencrypted=self._allow_unencrypted)
            write_public(self.root_dir / ROOT_PUB, public_pem(root.public_key()), replace=True)
            # The next number after any list the servers hold (legacy lists count as 0).
            state["sequence"] = 1 if any(info["retired_at"] for info in keys.values()) else 0
            self._write_state(state)
            self._sign_revocations(root, state)
            # Copied, then removed: the server's directory may be on another file system than the root's.
            write_private(self.root_dir / ROOT_KEY, legacy.read_bytes())
            legacy.unlink()
            return True

    def root_public_key(self) -> Ed25519PublicKey:
        try:
            data = (self.root_dir / ROOT_PUB).read_bytes()
        except OSError as exc:
            raise KeyringError(f"no root key in {self.root_dir}; run `license-server keys root init`") from exc
        return parse_public_pem(data, ROOT_PUB)

    def revocations(self) -> str:
        return (self.root_dir / REVOCATIONS).read_text().strip()

    # -- issuing keys -----------------------------------------------------------------------------------------
    def issue_key(self, *, bundle_passphrase: bytes | None) -> KeyBundle:
        """A new issuing key and its certificate, the key encrypted under ``bundle_passphrase`` (the servers')."""
        require_encryption_choice(bundle_passphrase, self._allow_unencrypted)
        key = Ed25519PrivateKey.generate()
        return self._certify(key.public_key(), serialize_private(key, bundle_passphrase).decode())

    def issue_certificate(self, public_key: Ed25519PublicKey) -> KeyBundle:
        """Certify a key made elsewhere (`keys request` on a server, or a KMS/HSM key): the bundle has no key."""
        return self._certify(public_key, None)

    def _certify(self, public_key: Ed25519PublicKey, private_pem: str | None) -> KeyBundle:
        with locked(self.root_dir):
            root = self._root()
            state = self._state()
            kid = thumbprint(public_key)
            if kid in state["keys"]:
                raise ValidationFailed(f"key {kid} is already certified", field="kid", code="key_exists")
            certificate = certify(root, public_key, clock=self._clock)
            created_at = self._clock().isoformat()
            state["keys"][kid] = {"certified_at": created_at, "retired_at": None}
            state["current"] = kid
            self._write_state(state)
            return KeyBundle(
                kid=kid,
                created_at=created_at,
                root_public_pem=public_pem(root.public_key()).decode(),
                certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode(),
                private_key_pem=private_pem,
                revocations=self.revocations(),
            )

    # -- revocation -------------------------------------------------------------------------------------------
    def retire(self, kid: str) -> str:
        """Add ``kid`` to the revocation list and sign it with the next number. The newest key cannot be retired
        (servers would have nothing to sign with); retiring a key twice returns the current list unchanged."""
        with locked(self.root_dir):
            state = self._state()
            info = state["keys"].get(kid)
            if info is None:
                raise KeyNotFound(f"this root never certified a key with id {kid}", field="kid")
            if state.get("current") == kid:
                raise ValidationFailed(
                    "the newest issuing key cannot be retired; rotate first", field="kid", code="key_in_use"
                )
            if info.get("retired_at"):
                return self.revocations()
            info["retired_at"] = self._clock().isoformat()
            state["sequence"] = int(state["sequence"]) + 1
            root = self._root()
            # The state first: a crash before the list is signed never signs one number twice with other content.
            self._write_state(state)
            self._sign_revocations(root, state)
            return self.revocations()

    def _sign_revocations(self, root: Ed25519PrivateKey, state: dict[str, Any]) -> None:
        retired = sorted((kid, info["retired_at"]) for kid, info in state["keys"].items() if info.get("retired_at"))
        claims = {
            "seq": int(state["sequence"]),
            "iat": int(self._clock().timestamp()),
            "retired": [{"kid": kid, "retired_at": at} for kid, at in retired],
        }
        headers = {"typ": KEY_REVOCATIONS_TYPE, "kid": thumbprint(root.public_key())}
        token = jwt.encode(claims, root, algorithm="EdDSA", headers=headers)
        write_public(self.root_dir / REVOCATIONS, token.encode() + b"\n", replace=True)

    # -- files ------------------------------------------------------------------------------------------------
    def _root(self) -> Ed25519PrivateKey:
        if not self.is_initialised:
            raise KeyringError(f"no root key in {self.root_dir}; run `license-server keys root init`")
        return load_private(self.root_dir / ROOT_KEY, self._passphrase, allow_unencrypted=self._allow_unencrypted)

    def _state(self) -> dict[str, Any]:
        try:
            state = json.loads((self.root_dir / ROOT_STATE).read_text())
        except (OSError, ValueError) as exc:
            raise KeyringError(f"{ROOT_STATE} is missing or damaged in {self.root_dir}") from exc
        if not isinstance(state, dict) or not isinstance(state.get("keys"), dict):
            raise KeyringError(f"{ROOT_STATE} is damaged")
        return state

    def _write_state(self, state: dict[str, Any]) -> None:
        write_public(self.root_dir / ROOT_STATE, json.dumps(state, indent=2).encode(), replace=True)
