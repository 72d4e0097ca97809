"""The server's keyring on disk: issuing keys and their root-signed certificates — never the root private key.

Layout of ``keys_dir``::

    root.pub                 root public key, PEM: checks every certificate and revocation list imported here
    issuing/<kid>.key        issuing private keys, encrypted PKCS#8 PEM
    issuing/<kid>.crt        X.509 certificate of the issuing key, signed by the root
    keyring.json             which key signs, and when each key was created or retired
    revocations.jws          the newest root-signed revocation list imported here
    secret-hashing.key       HMAC key for hashing license keys and tokens at rest

Keys arrive as bundles from the key host (``signing.root``: `keys rotate`/`keys issue-cert`), retirements as
revocation lists (`keys retire`); both are checked against ``root.pub`` before anything is written. Key ids are
RFC 7638 thumbprints. Private files are created 0600 and refused when group- or world-accessible.

Signing goes through ``SigningKey``: a local Ed25519 key here; a KMS or HSM key implements the same one method.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from license_server.clock import Clock, utcnow
from license_server.errors import KeyringError, ValidationFailed
from license_server.jose import b64url_encode, public_jwk, thumbprint
from license_server.signing.files import (
    ENCRYPTED_PKCS8_PEM,
    check_private_file,
    load_private,
    locked,
    parse_private,
    parse_public_pem,
    public_pem,
    require_encryption_choice,
    serialize_private,
    write_private,
    write_public,
)
from license_server.signing.root import ROOT_PUB, KeyBundle, RootKeyStore
from license_server.verifier.verify import (
    RevocationList,
    VerificationError,
    newest_revocation_list,
    read_revocation_list,
)

__all__ = [
    "ENCRYPTED_PKCS8_PEM",
    "ISSUING_DIR",
    "KEYRING",
    "REVOCATIONS",
    "ROOT_PUB",
    "SECRET_HASHING_KEY",
    "IssuingKey",
    "KeyStore",
    "Keyring",
    "LocalSigningKey",
    "SigningKey",
    "create_dev_keys",
    "create_dev_passphrase_file",
    "resolve_passphrase",
]

KEYRING = "keyring.json"
REVOCATIONS = "revocations.jws"
SECRET_HASHING_KEY = "secret-hashing.key"  # noqa: S105 - a file name
ISSUING_DIR = "issuing"
LEGACY_ROOT_KEY = "root.key"  # where servers kept the root before it moved to the key host


class SigningKey(Protocol):
    """Signs with one issuing key. A KMS or HSM implementation holds the key elsewhere and signs remotely."""

    @property
    def kid(self) -> str: ...

    def sign(self, data: bytes) -> bytes:
        """The Ed25519 signature of ``data``."""
        ...


@dataclass(frozen=True)
class LocalSigningKey:
    """An issuing key decrypted from ``issuing/<kid>.key`` into this process."""

    kid: str
    private_key: Ed25519PrivateKey = field(repr=False)

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)


@dataclass(frozen=True)
class IssuingKey:
    kid: str
    public_key: Ed25519PublicKey
    certificate_der: bytes
    created_at: datetime
    retired_at: datetime | None
    signing_key: SigningKey | None = field(default=None, repr=False)

    @property
    def is_retired(self) -> bool:
        return self.retired_at is not None

    @property
    def private_key(self) -> Ed25519PrivateKey | None:
        """The local private key, when this process holds it (None for retired keys and remote signers)."""
        return self.signing_key.private_key if isinstance(self.signing_key, LocalSigningKey) else None

    def jwk(self) -> dict[str, object]:
        return {
            **public_jwk(self.public_key),
            "kid": self.kid,
            "use": "sig",
            "alg": "EdDSA",
            "x5c": [base64.b64encode(self.certificate_der).decode("ascii")],
        }


@dataclass(frozen=True)
class Keyring:
    """A loaded, validated keyring: what the server signs with and publishes."""

    root_public_key: Ed25519PublicKey
    root_kid: str
    signer_kid: str
    keys: dict[str, IssuingKey]
    revocation_list: RevocationList | None
    secret_hashing_key: bytes = field(repr=False)

    @property
    def signer(self) -> IssuingKey:
        return self.keys[self.signer_kid]

    @property
    def revocations(self) -> str | None:
        return self.revocation_list.token if self.revocation_list else None

    @property
    def revoked_kids(self) -> frozenset[str]:
        return self.revocation_list.kids if self.revocation_list else frozenset()

    @property
    def published(self) -> list[IssuingKey]:
        return [key for key in self.keys.values() if not key.is_retired]

    def jwks(self) -> dict[str, object]:
        return {"keys": [key.jwk() for key in self.published]}

    def with_revocation_list(self, revocations: RevocationList) -> Keyring:
        """This keyring under a newer revocation list (e.g. imported by another replica): its keys are retired here
        too and their private halves dropped from memory, so nothing signs with them again."""
        retired_at = dict(revocations.retired)
        keys = {
            kid: replace(key, retired_at=_retired_at(retired_at[kid], revocations), signing_key=None)
            if kid in retired_at
            else key
            for kid, key in self.keys.items()
        }
        return replace(self, keys=keys, revocation_list=revocations)


def _retired_at(value: str | None, revocations: RevocationList) -> datetime:
    try:
        return datetime.fromisoformat(value) if value else datetime.fromtimestamp(revocations.issued_at, UTC)
    except ValueError:
        return datetime.fromtimestamp(revocations.issued_at, UTC)


def load_secret_hashing_key(keys_dir: Path) -> bytes:
    """The HMAC key for secrets hashed at rest; also the key material of secrets encrypted at rest."""
    return check_private_file(keys_dir / SECRET_HASHING_KEY).strip()


class KeyStore:
    """Loads the server's keyring and imports what the key host produces: key bundles and revocation lists."""

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

    @property
    def is_initialised(self) -> bool:
        return (self.keys_dir / KEYRING).exists()

    @property
    def passphrase(self) -> bytes | None:
        return self._passphrase

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def holds_legacy_root_key(self) -> bool:
        """A root private key left here by a version that kept it on servers (it should move to the key host)."""
        return (self.keys_dir / LEGACY_ROOT_KEY).exists()

    # -- loading ----------------------------------------------------------------------------------------------
    def _load_private(self, path: Path) -> Ed25519PrivateKey:
        return load_private(path, self._passphrase, allow_unencrypted=self._allow_unencrypted)

    def _read_keyring(self) -> dict[str, object]:
        try:
            data = json.loads((self.keys_dir / KEYRING).read_text())
        except (OSError, ValueError) as exc:
            raise KeyringError("keyring.json is missing or damaged; run `license-server init`") from exc
        if not isinstance(data, dict) or not isinstance(data.get("keys"), dict):
            raise KeyringError("keyring.json is damaged")
        return data

    def _write_keyring(self, data: dict[str, object]) -> None:
        write_public(self.keys_dir / KEYRING, json.dumps(data, indent=2).encode(), replace=True)

    def root_public_key(self) -> Ed25519PublicKey:
        try:
            data = (self.keys_dir / ROOT_PUB).read_bytes()
        except OSError as exc:
            raise KeyringError("root.pub is missing; import a key bundle (`license-server keys import`)") from exc
        try:
            return parse_public_pem(data, ROOT_PUB)
        except KeyringError as exc:
            raise KeyringError("root.pub is missing or damaged") from exc

    def keyring_version(self) -> bytes:
        """A digest of keyring.json and revocations.jws: changes on every import, unlike a coarse mtime."""
        digest = hashlib.sha256()
        for name in (KEYRING, REVOCATIONS):
            try:
                digest.update((self.keys_dir / name).read_bytes())
            except OSError:
                digest.update(b"-")
        return digest.digest()

    def revocation_list(self) -> RevocationList | None:
        """The revocation list held here, verified against root.pub (None before the first)."""
        path = self.keys_dir / REVOCATIONS
        try:
            token = path.read_text().strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise KeyringError(f"cannot read {REVOCATIONS}: {exc.strerror}") from exc
        if not token:
            return None
        try:
            return read_revocation_list(token, self.root_public_key())
        except VerificationError as exc:
            raise KeyringError(f"{REVOCATIONS} is not a revocation list signed by the root ({exc.reason})") from exc

    def load(self) -> Keyring:
        """Load and check everything the server needs to sign: any problem is a KeyringError, never a crash."""
        if not self.is_initialised:
            raise KeyringError(
                f"no keys yet ({KEYRING} is missing): run `license-server init --dev`, or import a key bundle from the "
                "key host (`license-server keys import BUNDLE`)"
            )
        root_public = self.root_public_key()
        meta = self._read_keyring()
        hashing_key = load_secret_hashing_key(self.keys_dir)
        revocations = self.revocation_list()
        revoked = revocations.kids if revocations else frozenset()
        keys: dict[str, IssuingKey] = {}
        raw_keys = meta["keys"]
        assert isinstance(raw_keys, dict)
        for kid, info in raw_keys.items():
            keys[kid] = self._load_issuing(kid, info, root_public, revoked=kid in revoked)
        signer = meta.get("signer")
        if not isinstance(signer, str) or signer not in keys or keys[signer].is_retired:
            raise KeyringError("keyring.json names no usable signing key")
        keyring = Keyring(
            root_public_key=root_public,
            root_kid=thumbprint(root_public),
            signer_kid=signer,
            keys=keys,
            revocation_list=revocations,
            secret_hashing_key=hashing_key,
        )
        return keyring.with_revocation_list(revocations) if revocations else keyring

    def _load_issuing(
        self, kid: str, info: dict[str, str | None], root: Ed25519PublicKey, *, revoked: bool
    ) -> IssuingKey:
        certificate = self._certificate(kid, root)
        public = certificate.public_key()
        assert isinstance(public, Ed25519PublicKey)
        if not isinstance(info, dict):
            raise KeyringError(f"keyring.json entry of key {kid} is damaged")
        retired_at = info.get("retired_at")
        created = info.get("created_at")
        try:
            created_at = datetime.fromisoformat(created) if created else datetime.fromtimestamp(0, UTC)
            retired = datetime.fromisoformat(retired_at) if retired_at else None
        except (TypeError, ValueError) as exc:
            raise KeyringError(f"keyring.json has a damaged date for key {kid}") from exc
        signing_key = None
        if not retired_at and not revoked:
            private = self._load_private(self.keys_dir / ISSUING_DIR / f"{kid}.key")
            if thumbprint(private.public_key()) != kid:
                raise KeyringError(f"private key {kid} does not match its key id")
            signing_key = LocalSigningKey(kid, private)
        return IssuingKey(
            kid=kid,
            public_key=public,
            certificate_der=certificate.public_bytes(serialization.Encoding.DER),
            created_at=created_at,
            retired_at=retired,
            signing_key=signing_key,
        )

    def _certificate(self, kid: str, root: Ed25519PublicKey) -> x509.Certificate:
        try:
            return _checked_certificate((self.keys_dir / ISSUING_DIR / f"{kid}.crt").read_bytes(), kid, root)
        except OSError as exc:
            raise KeyringError(f"certificate of key {kid} is missing or not signed by the root") from exc

    # -- imports from the key host ----------------------------------------------------------------------------
    def request_key(self) -> tuple[str, bytes]:
        """Make an issuing key here, for the key host to certify (`keys issue-cert`): (kid, public key PEM).
        The private half never leaves this directory; the bundle that comes back carries only the certificate."""
        require_encryption_choice(self._passphrase, self._allow_unencrypted)
        with locked(self.keys_dir):
            key = Ed25519PrivateKey.generate()
            kid = thumbprint(key.public_key())
            (self.keys_dir / ISSUING_DIR).mkdir(parents=True, exist_ok=True)
            write_private(self.keys_dir / ISSUING_DIR / f"{kid}.key", serialize_private(key, self._passphrase))
            return kid, public_pem(key.public_key())

    def import_bundle(self, data: bytes, *, bundle_passphrase: bytes | None = None, make_signer: bool = True) -> str:
        """Add an issuing key certified by the root (and make it the signer). The first bundle also brings root.pub
        and creates the secret-hashing key; later ones must come from the same root. Returns the key id."""
        bundle = KeyBundle.from_json(data)
        with locked(self.keys_dir):
            require_encryption_choice(self._passphrase, self._allow_unencrypted)
            try:
                return self._import_bundle(bundle, bundle_passphrase, make_signer=make_signer)
            except KeyringError as exc:  # a bad bundle is bad input, not an unusable keyring
                raise ValidationFailed(exc.detail, field="bundle", code="invalid_key_bundle") from exc

    def _import_bundle(self, bundle: KeyBundle, bundle_passphrase: bytes | None, *, make_signer: bool) -> str:
        offered_root = parse_public_pem(bundle.root_public_pem.encode(), "the bundle's root key")
        if (self.keys_dir / ROOT_PUB).exists():
            root = self.root_public_key()
            if thumbprint(root) != thumbprint(offered_root):
                raise ValidationFailed(
                    "the bundle comes from another root than the one this server trusts",
                    field="bundle",
                    code="foreign_root",
                )
        else:
            root = offered_root
        certificate = _checked_certificate(bundle.certificate_pem.encode(), bundle.kid, root)
        issuing = self.keys_dir / ISSUING_DIR
        key_path = issuing / f"{bundle.kid}.key"
        if bundle.private_key_pem is not None:
            private = parse_private(
                bundle.private_key_pem.encode(),
                "the bundle's private key",
                bundle_passphrase if bundle_passphrase is not None else self._passphrase,
                allow_unencrypted=self._allow_unencrypted,
            )
        elif key_path.exists():
            private = self._load_private(key_path)  # made here by `keys request`
        else:
            raise ValidationFailed(
                f"the bundle has no private key and this server holds no key {bundle.kid} "
                "(`keys request` makes one here)",
                field="bundle",
                code="key_not_held",
            )
        if thumbprint(private.public_key()) != bundle.kid:
            raise ValidationFailed("the private key does not match the certificate", field="bundle")
        revocations = _readable_revocations(bundle.revocations, root)
        held = self.revocation_list() if (self.keys_dir / ROOT_PUB).exists() else None
        if bundle.kid in revocations.kids | (held.kids if held else frozenset()):
            raise ValidationFailed(f"key {bundle.kid} is retired", field="bundle", code="key_retired")
        # Every check passed: write, public files before the keyring that names them.
        issuing.mkdir(parents=True, exist_ok=True)
        if not (self.keys_dir / ROOT_PUB).exists():
            write_public(self.keys_dir / ROOT_PUB, public_pem(root))
        if not (self.keys_dir / SECRET_HASHING_KEY).exists():
            write_private(self.keys_dir / SECRET_HASHING_KEY, secrets.token_hex(32).encode())
        if not key_path.exists():
            write_private(key_path, serialize_private(private, self._passphrase))
        write_public(issuing / f"{bundle.kid}.crt", certificate.public_bytes(serialization.Encoding.PEM), replace=True)
        if held is None or revocations.sequence > held.sequence:  # a bundle older than the held list: keep it
            self._adopt_revocations_file(revocations)
        meta = self._read_keyring() if self.is_initialised else {"signer": None, "keys": {}}
        keys = meta["keys"]
        assert isinstance(keys, dict)
        keys.setdefault(bundle.kid, {"created_at": bundle.created_at, "retired_at": None})
        if make_signer or meta.get("signer") is None:
            meta["signer"] = bundle.kid
        self._write_keyring(meta)
        return bundle.kid

    def check_revocations(self, token: str) -> RevocationList:
        """Verify a revocation list for import: signed by the root, not older than the one held here, and not
        retiring the key this server signs with (import the next key's bundle first)."""
        offered = _readable_revocations(token, self.root_public_key())
        try:
            newest_revocation_list(self.revocation_list(), offered)
        except VerificationError as exc:
            raise ValidationFailed(exc.detail, field="revocations", code="revocations_outdated") from exc
        signer = self._read_keyring().get("signer")
        if signer in offered.kids:
            raise ValidationFailed(
                f"the list retires {signer}, the key this server signs with: import the next key's bundle first",
                field="revocations",
                code="key_in_use",
            )
        return offered

    def import_revocations(self, revocations: RevocationList) -> None:
        """Retire the keys of a checked list here: unpublished, private halves deleted, the list kept to serve."""
        with locked(self.keys_dir):
            held = self.revocation_list()
            if held is not None and revocations.sequence <= held.sequence:
                return  # another process imported it (or a newer one) meanwhile
            self._adopt_revocations_file(revocations)

    def _adopt_revocations_file(self, revocations: RevocationList) -> None:
        known: set[str] = set()
        if self.is_initialised:
            meta = self._read_keyring()
            keys = meta["keys"]
            assert isinstance(keys, dict)
            known = set(keys)
            for kid, at in revocations.retired:
                if kid in keys and not keys[kid].get("retired_at"):
                    keys[kid]["retired_at"] = at or self._clock().isoformat()
            self._write_keyring(meta)
        write_public(self.keys_dir / REVOCATIONS, revocations.token.encode() + b"\n", replace=True)
        # The private half is no longer needed by anyone; removing it limits what a later leak exposes. Only keys
        # this keyring names: a key id is never used as a path unless it is one of ours.
        for kid in revocations.kids & known:
            (self.keys_dir / ISSUING_DIR / f"{kid}.key").unlink(missing_ok=True)

    def export_public(self, out_dir: Path, keyring: Keyring | None = None) -> list[Path]:
        """Write what verifiers need: root.pub, jwks.json and revocations.jws (of ``keyring``, e.g. a signer's that
        adopted a newer list from the database, else of this directory)."""
        keyring = keyring or self.load()
        out_dir.mkdir(parents=True, exist_ok=True)
        written = [out_dir / ROOT_PUB, out_dir / "jwks.json", out_dir / REVOCATIONS]
        written[0].write_bytes((self.keys_dir / ROOT_PUB).read_bytes())
        written[1].write_text(json.dumps(keyring.jwks(), indent=2) + "\n")
        written[2].write_text((keyring.revocations or "") + "\n")
        return written


def _readable_revocations(token: str, root: Ed25519PublicKey) -> RevocationList:
    try:
        return read_revocation_list(token, root)
    except VerificationError as exc:
        raise ValidationFailed(
            f"not a revocation list signed by this server's root ({exc.reason}: {exc.detail})",
            field="revocations",
            code="invalid_revocations",
        ) from exc


def _checked_certificate(pem: bytes, kid: str, root: Ed25519PublicKey) -> x509.Certificate:
    try:
        certificate = x509.load_pem_x509_certificate(pem)
        root.verify(certificate.signature, certificate.tbs_certificate_bytes)
    except (ValueError, InvalidSignature, UnsupportedAlgorithm) as exc:
        raise KeyringError(f"certificate of key {kid} is missing or not signed by the root") from exc
    public = certificate.public_key()
    if not isinstance(public, Ed25519PublicKey) or thumbprint(public) != kid:
        raise KeyringError(f"certificate of key {kid} does not match its key id")
    return certificate


def create_dev_keys(store: KeyStore, root: RootKeyStore, *, passphrase: bytes | None) -> bool:
    """Development: a root in its own directory (as if on a key host), one issuing key certified by it and
    imported here. The server directory never receives the root private key. False when a keyring exists."""
    if store.is_initialised:
        return False
    root.initialise()
    store.import_bundle(root.issue_key(bundle_passphrase=passphrase).to_json())
    return True


def resolve_passphrase(passphrase: str | None, passphrase_file: Path) -> bytes | None:
    """The passphrase from the environment, else from the passphrase file, else None."""
    if passphrase:
        return passphrase.encode()
    if passphrase_file.exists():
        data = check_private_file(passphrase_file).strip()
        if not data:
            raise KeyringError(f"{passphrase_file.name} is empty")
        return data
    return None


def create_dev_passphrase_file(path: Path) -> bool:
    """Development convenience: a random passphrase in a 0600 file. Returns False if one exists."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, b64url_encode(secrets.token_bytes(32)).encode() + b"\n")
    return True
