"""What a running edge holds: the verified license file, the install's identity, local state, trusted time.

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
from license_server.lifecycle.status import StatusResult, compute_status
from license_server.offline.files import LicenseFile, install_key_id, verify_license_file
from license_server.offline.install import load_install_key
from license_server.offline.observer import DEFAULT_CLOCK_TOLERANCE, TrustedTime, facts_from_claims
from license_server.verifier import VerificationError, Verifier

logger = logging.getLogger("license_server.edge")
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
    ) -> None:
        self.license_path = license_path
        self.verifier = verifier
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

    @property
    def license_file(self) -> LicenseFile:
        if self._file is None:
            raise RuntimeError("the edge has not started")
        return self._file

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
        self._file, self._stamp, self.file_error = verified, stamp, None
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
