"""The one signer, and the imports that change what it signs with.

The signer holds the loaded keyring, notices imports made by other processes (keyring.json and revocations.jws
change), keeps the last good keyring while the directory cannot be read, and adopts revocation lists that any
replica imported into the shared database (``RevocationWatch``).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from license_server.auth.audit import record_audit
from license_server.clock import Clock, utcnow
from license_server.errors import KeyringError, ValidationFailed
from license_server.jose import LICENSE_DOCUMENT_TYPE, compact_jws
from license_server.signing.keys import IssuingKey, Keyring, KeyStore
from license_server.signing.models import KeyRevocationList
from license_server.verifier.verify import (
    RevocationList,
    VerificationError,
    newest_revocation_list,
    read_revocation_list,
)

if TYPE_CHECKING:
    from license_server.auth.tokens import Actor

logger = logging.getLogger("license_server.signing")


class Signer:
    def __init__(self, store: KeyStore, *, refresh_seconds: float = 5.0) -> None:
        self._store = store
        self._refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._keyring: Keyring | None = None
        self._loaded_version = b""
        self._checked_at = 0.0
        # A list newer than the one in keys_dir, seen in the database (imported by another replica).
        self._adopted: RevocationList | None = None
        self._reload_error: str | None = None

    @property
    def store(self) -> KeyStore:
        return self._store

    @property
    def reload_error(self) -> str | None:
        """Why the keyring directory could not be re-read, while the last good keyring is still in use."""
        return self._reload_error

    def keyring(self) -> Keyring:
        """The current keyring, re-read when keyring.json or revocations.jws changed (an import by the CLI or
        another replica). A keyring that cannot be read keeps the last good one in service: the failure is logged
        once per streak and the directory is tried again every ``refresh_seconds``."""
        now = time.monotonic()
        if self._keyring is not None and now - self._checked_at < self._refresh_seconds:
            return self._keyring
        with self._lock:
            self._checked_at = now
            try:
                version = self._store.keyring_version()
                if self._keyring is None or version != self._loaded_version:
                    self._keyring = self._with_adopted(self._store.load())
                    self._loaded_version = version
            except (KeyringError, OSError) as exc:
                if self._keyring is None:
                    raise
                detail = exc.detail if isinstance(exc, KeyringError) else str(exc)
                if self._reload_error is None:
                    logger.warning("cannot re-read the keyring (%s); signing with the last good keyring", detail)
                self._reload_error = detail
                return self._keyring
            if self._reload_error is not None:
                logger.info("the keyring is readable again")
                self._reload_error = None
            return self._keyring

    def reload(self) -> Keyring:
        with self._lock:
            version = self._store.keyring_version()  # read first: a change during load() is seen next time
            self._keyring = self._with_adopted(self._store.load())
            self._loaded_version = version
            self._checked_at = time.monotonic()
            self._reload_error = None
            return self._keyring

    def _with_adopted(self, keyring: Keyring) -> Keyring:
        adopted, held = self._adopted, keyring.revocation_list
        if adopted is not None and (held is None or adopted.sequence > held.sequence):
            return keyring.with_revocation_list(adopted)
        return keyring

    def adopt_revocations(self, token: str) -> bool:
        """Retire, in this process, the keys of a list newer than the one held. True when it was newer."""
        keyring = self.keyring()
        try:
            offered = read_revocation_list(token, keyring.root_public_key)
        except VerificationError as exc:
            logger.error("refusing a revocation list from the database that the root did not sign: %s", exc)
            return False
        held = keyring.revocation_list
        if held is not None and offered.sequence <= held.sequence:
            return False
        with self._lock:
            self._adopted = offered
            if self._keyring is not None:
                self._keyring = self._keyring.with_revocation_list(offered)
        logger.info("revocation list %s in force: retired %s", offered.sequence, ", ".join(sorted(offered.kids)))
        return True

    def sign(self, claims: dict[str, Any], *, typ: str = LICENSE_DOCUMENT_TYPE) -> str:
        """A JWS compact serialization, EdDSA, carrying the key id and the root's certificate of the key."""
        signer = self.keyring().signer
        if signer.signing_key is None:
            raise KeyringError(
                f"the signing key {signer.kid} was retired; import the next key's bundle (`keys import`)"
            )
        header: dict[str, object] = {"kid": signer.kid, "x5c": [base64.b64encode(signer.certificate_der).decode()]}
        if typ:
            header["typ"] = typ
        return compact_jws(header, claims, signer.signing_key.sign)


class RevocationWatch:
    """Adopts the revocation lists any replica imported, checking the database at most every ``interval`` seconds
    (the poll path's staleness bound), so a replica that did not run the import stops serving retired keys too."""

    def __init__(
        self,
        signer: Signer,
        session_factory: async_sessionmaker[AsyncSession],
        *,
        interval: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._signer = signer
        self._session_factory = session_factory
        self._interval = interval
        self._monotonic = monotonic
        self._due = float("-inf")
        self._lock = asyncio.Lock()
        self._failing = False

    async def check(self) -> bool:
        """True when a newer list was adopted now. Concurrent callers at the boundary share one query."""
        if self._monotonic() < self._due:
            return False
        async with self._lock:
            started = self._monotonic()
            if started < self._due:
                return False
            try:
                async with self._session_factory() as session:
                    newest = (
                        await session.execute(
                            select(KeyRevocationList.sequence, KeyRevocationList.token)
                            .order_by(KeyRevocationList.sequence.desc())
                            .limit(1)
                        )
                    ).first()
            except Exception as exc:  # the database is down: keep serving, try again on the next call
                if not self._failing:
                    logger.warning("cannot read revocation lists from the database: %s", exc.__class__.__name__)
                self._failing = True
                return False
            self._failing = False
            self._due = started + self._interval
        if newest is None:
            return False
        held = self._signer.keyring().revocation_list
        if held is not None and newest.sequence <= held.sequence:
            return False
        return self._signer.adopt_revocations(newest.token)


async def newest_stored_revocation_list(session: AsyncSession, signer: Signer) -> RevocationList | None:
    token = await session.scalar(select(KeyRevocationList.token).order_by(KeyRevocationList.sequence.desc()).limit(1))
    return read_revocation_list(token, signer.keyring().root_public_key) if token else None


async def import_revocation_list(
    session: AsyncSession, *, actor: Actor, signer: Signer, token: str, clock: Clock = utcnow
) -> RevocationList:
    """Import a root-signed revocation list: checked (signed by the root, not older than any list held here or in
    the database, not retiring this server's signer), stored in the database for every replica, then applied to
    this server's key directory. Importing the list in force again changes nothing."""
    offered = await anyio.to_thread.run_sync(signer.store.check_revocations, token)
    stored = await newest_stored_revocation_list(session, signer)
    try:
        in_force = newest_revocation_list(stored, offered)
    except VerificationError as exc:
        raise ValidationFailed(exc.detail, field="revocations", code="revocations_outdated") from exc
    if in_force is not stored:
        session.add(
            KeyRevocationList(
                sequence=offered.sequence,
                token=offered.token,
                issued_at=_utc(offered.issued_at),
                imported_at=clock(),
                imported_by=actor.name,
            )
        )
        await record_audit(
            session,
            actor=actor,
            action="key.revocations_imported",
            target_type="key_revocations",
            target_id=str(offered.sequence),
            detail={"retired": sorted(offered.kids)},
            clock=clock,
        )
        await session.commit()
    await anyio.to_thread.run_sync(signer.store.import_revocations, offered)
    signer.reload()
    return offered


async def import_key_bundle(
    session: AsyncSession | None,
    *,
    actor: Actor,
    signer_store: KeyStore,
    bundle: bytes,
    bundle_passphrase: bytes | None = None,
    make_signer: bool = True,
    clock: Clock = utcnow,
) -> str:
    """Import an issuing key from the key host; audited when the server has a database to audit into."""
    kid = await anyio.to_thread.run_sync(
        lambda: signer_store.import_bundle(bundle, bundle_passphrase=bundle_passphrase, make_signer=make_signer)
    )
    if session is not None:
        await record_audit(
            session,
            actor=actor,
            action="key.imported",
            target_type="key",
            target_id=kid,
            detail={"signer": make_signer},
            clock=clock,
        )
        await session.commit()
    return kid


def signing_key_list(keyring: Keyring) -> list[IssuingKey]:
    return sorted(keyring.keys.values(), key=lambda key: key.created_at)


def _utc(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)
