"""What a running edge holds: the verified license file, the install's identity, local state, trusted time.

Retired issuing keys: the edge holds the newest root-signed revocation list it was given (``--revocations``, re-read
when the file changes; kept in the data directory), refuses an older one, and refuses a license file signed by a
retired key — at start, on a swap, and for the file in service once a list retires its key.

``edge_license_state`` is the one way to ask the edge what the license says now — the verified claims and the status
computed by the one status function — for the edge's own routes and for anything mounted on it (the inner API).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from license_server.clock import Clock, utcnow
from license_server.edge.store import (
    EdgeBinding,
    EdgeTrustedTime,
    create_edge_engine,
    edge_session_factory,
    prepare,
)
from license_server.errors import LicenseFileRefused
from license_server.lifecycle.observer import DEFAULT_CLOCK_TOLERANCE, TrustedTime, facts_from_claims
from license_server.lifecycle.status import StatusResult, compute_status
from license_server.offline.files import LicenseFile, install_key_id, verify_license_file
from license_server.offline.install import load_install_key
from license_server.verifier import (
    RevocationList,
    VerificationError,
    Verifier,
    newest_revocation_list,
    read_revocation_list,
)

logger = logging.getLogger("license_server.edge")
REVOCATIONS_FILE = "revocations.jws"  # in the data directory: the newest list this edge was given
PERSIST_EVERY = timedelta(seconds=30)  # how often the trusted-time mark is written while the clock moves forward


@dataclass(frozen=True)
class EdgeLicenseState:
    claims: dict[str, Any]
    status: StatusResult
    token: str
    etag: str
    checked_at: datetime


class EdgeRuntime:
    def __init__(
        self,
        *,
        license_path: Path,
        verifier: Verifier,
        data_dir: Path,
        fingerprint: str,
        clock: Clock = utcnow,
        clock_tolerance: timedelta = DEFAULT_CLOCK_TOLERANCE,
        token: str | None = None,
        engine: AsyncEngine | None = None,
        revocations_path: Path | None = None,
    ) -> None:
        self.license_path = license_path
        self._root_verifier = verifier
        self.verifier = verifier
        self.revocations_path = revocations_path
        self.revocations: RevocationList | None = None
        self.revocations_error: str | None = None  # why the offered list was refused (older than the one held)
        self._revocations_stamp: tuple[int, int] | None = None
        self.retired_file: str | None = None  # set when a list retired the key of the file in service
        self.data_dir = data_dir
        self.fingerprint = fingerprint
        self.clock = clock
        self.token = token
        self.install_key = install_key_id(load_install_key(data_dir).public_key())
        self.engine = engine or create_edge_engine(data_dir)
        self.session_factory: async_sessionmaker[AsyncSession] = edge_session_factory(self.engine)
        self.trusted = TrustedTime(tolerance=clock_tolerance.total_seconds())
        self.file_error: str | None = None  # why the file on disk was refused, while an older one is served
        self._file: LicenseFile | None = None
        self._etag = ""
        self._stamp: tuple[int, int] | None = None
        self._persisted = TrustedTime()
        self._load_held_revocations()
        self.reload_revocations_if_changed()

    @property
    def license_file(self) -> LicenseFile:
        if self._file is None:
            raise RuntimeError("the edge has not started")
        return self._file

    # -- revocation lists ------------------------------------------------------------------------------------------
    def _load_held_revocations(self) -> None:
        try:
            token = (self.data_dir / REVOCATIONS_FILE).read_text()
        except OSError:
            return
        try:
            self._hold(read_revocation_list(token, self._root_verifier.root_public_key))
        except VerificationError as exc:
            logger.error("the held revocation list is not signed by the root (%s); ignoring it", exc)

    def reload_revocations_if_changed(self) -> None:
        """Adopt the offered list when its file changed; an older list than the held one is refused (a replay)."""
        if self.revocations_path is None:
            return
        try:
            stat = self.revocations_path.stat()
            if (stat.st_mtime_ns, stat.st_size) == self._revocations_stamp:
                return
            self._revocations_stamp = (stat.st_mtime_ns, stat.st_size)
            offered = read_revocation_list(self.revocations_path.read_text(), self._root_verifier.root_public_key)
            held = newest_revocation_list(self.revocations, offered)
        except (OSError, VerificationError) as exc:
            self.revocations_error = str(exc)
            logger.warning("the revocation list %s is refused (%s); keeping the one held", self.revocations_path, exc)
            return
        self.revocations_error = None
        if held is not self.revocations:
            self._hold(held)
            (self.data_dir / REVOCATIONS_FILE).write_text(held.token + "\n")

    def _hold(self, revocations: RevocationList) -> None:
        self.revocations = revocations
        self.verifier = self._root_verifier.with_revocation_list(revocations)
        if self._file is not None and self._file.document.kid in revocations.kids:
            self.retired_file = f"the license file's signing key {self._file.document.kid} was retired"
            logger.error("%s; ask the vendor for a renewed file", self.retired_file)

    def _read_file(self) -> tuple[LicenseFile, tuple[int, int]]:
        stat = self.license_path.stat()
        text = self.license_path.read_bytes()
        # Dates are judged by the status (expired) and the trusted time (rolled back), not by refusing the file.
        verified = verify_license_file(
            text, self.verifier, fingerprint=self.fingerprint, install_key=self.install_key, check_dates=False
        )
        return verified, (stat.st_mtime_ns, stat.st_size)

    async def start(self) -> None:
        """Create the local tables, load the trusted time, and verify the license file (raises when refused)."""
        await prepare(self.engine)
        async with self.session_factory() as session:
            row = await session.get(EdgeTrustedTime, 1)
        if row is not None:
            self.trusted.newest_iat, self.trusted.newest_local = row.newest_iat, row.newest_local
            self._persisted = TrustedTime(row.newest_iat, row.newest_local)
        verified, stamp = self._read_file()
        await self._install(verified, stamp)

    async def _install(self, verified: LicenseFile, stamp: tuple[int, int]) -> None:
        self._file, self._stamp, self.file_error, self.retired_file = verified, stamp, None, None
        self._etag = '"' + hashlib.sha256(verified.token.encode()).hexdigest()[:32] + '"'
        claims = verified.claims
        async with self.session_factory() as session:
            await session.execute(delete(EdgeBinding))
            session.add(
                EdgeBinding(
                    id=1,
                    license_id=str(claims.get("license_id")),
                    activation_id=verified.binding.activation_id,
                    fingerprint=verified.binding.fingerprint,
                    install_key=verified.binding.install_key,
                    claims=claims,
                    loaded_at=self.clock(),
                )
            )
            await session.commit()
        logger.info("serving license %s (file issued at %s)", claims.get("license_id"), claims.get("iat"))

    async def reload_if_changed(self) -> None:
        """Pick up a renewed file dropped in place of the old one; a refused file leaves the old one in service."""
        self.reload_revocations_if_changed()
        try:
            stat = self.license_path.stat()
        except OSError as exc:
            self.file_error = f"cannot read {self.license_path}: {exc.strerror}"
            return
        if (stat.st_mtime_ns, stat.st_size) == self._stamp:
            return
        try:
            verified, stamp = self._read_file()
        except (OSError, VerificationError) as exc:
            self._stamp = (stat.st_mtime_ns, stat.st_size)  # judged once per change, not on every request
            self.file_error = str(exc)
            logger.warning("the license file was replaced but refused (%s); still serving the previous one", exc)
            return
        await self._install(verified, stamp)

    async def _observe_time(self, now: datetime) -> bool:
        iat = self.license_file.claims.get("iat")
        rolled_back = self.trusted.observe(now, float(iat) if isinstance(iat, int | float) else None)
        moved = self.trusted.newest_local - self._persisted.newest_local >= PERSIST_EVERY.total_seconds()
        if moved or self.trusted.newest_iat != self._persisted.newest_iat:
            await self.persist_trusted_time()
        return rolled_back

    async def persist_trusted_time(self) -> None:
        """Write the mark; never lower it (another edge process on the same data directory may be ahead)."""
        async with self.session_factory() as session:
            row = await session.get(EdgeTrustedTime, 1)
            if row is None:
                row = EdgeTrustedTime(id=1, newest_iat=0.0, newest_local=0.0)
                session.add(row)
            row.newest_iat = max(row.newest_iat, self.trusted.newest_iat)
            row.newest_local = max(row.newest_local, self.trusted.newest_local)
            snapshot = TrustedTime(row.newest_iat, row.newest_local)
            await session.commit()
        self._persisted = snapshot

    async def state(self) -> EdgeLicenseState:
        await self.reload_if_changed()
        if self.retired_file is not None:
            raise LicenseFileRefused(f"{self.retired_file}; nothing is served from it until a renewed file arrives")
        now = self.clock()
        rolled_back = await self._observe_time(now)
        verified = self.license_file
        try:
            facts = facts_from_claims(verified.claims, now=now, clock_rolled_back=rolled_back)
        except ValueError:  # signed but unreadable dates: the vendor's bug, reported as no usable license
            return EdgeLicenseState(verified.claims, compute_status(None, now), verified.token, self._etag, now)
        return EdgeLicenseState(verified.claims, compute_status(facts, now), verified.token, self._etag, now)

    async def database_ok(self) -> bool:
        try:
            async with self.session_factory() as session:
                await session.execute(select(1))
        except Exception:
            return False
        return True

    async def close(self) -> None:
        try:
            await self.persist_trusted_time()
        finally:
            await self.engine.dispose()


async def edge_license_state(edge: EdgeRuntime) -> EdgeLicenseState:
    """The verified claims and the status now: what the edge's routes, and anything mounted on it, act on."""
    return await edge.state()
