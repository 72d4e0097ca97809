"""Job leases: exactly one replica runs a leased job at a time; a crashed holder's lease simply expires, and a
process that stops cleanly hands its leases back (``release_leases``) so the next holder need not wait for that."""

from __future__ import annotations

import os
import secrets
import socket
from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.events.models import JobLease


def new_lease_holder() -> str:
    """A holder id unique to this process start: host and pid alone repeat (every container can be ``host:1``, and a
    restarted process may get its predecessor's pid), and a repeated id would renew someone else's lease."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(6)}"


async def acquire_lease(session: AsyncSession, *, name: str, holder: str, ttl: timedelta, now: datetime) -> bool:
    """Take or renew the lease; False if another holder's lease is still valid. Commits."""
    taken = await session.execute(
        update(JobLease)
        .where(JobLease.name == name, or_(JobLease.holder == holder, JobLease.expires_at <= now))
        .values(holder=holder, expires_at=now + ttl)
    )
    if taken.rowcount == 1:  # type: ignore[attr-defined]
        await session.commit()
        return True
    session.add(JobLease(name=name, holder=holder, expires_at=now + ttl))
    try:
        await session.commit()
    except IntegrityError:  # someone else holds it
        await session.rollback()
        return False
    return True


async def release_lease(session: AsyncSession, *, name: str, holder: str, now: datetime) -> None:
    await session.execute(
        update(JobLease).where(JobLease.name == name, JobLease.holder == holder).values(expires_at=now)
    )
    await session.commit()


async def release_leases(session: AsyncSession, *, holder: str, now: datetime) -> int:
    """Expire every lease ``holder`` has (on shutdown): another replica, or this one restarted, takes them at its next
    run instead of after the lease's timeout. Commits; returns how many were released."""
    released = await session.execute(
        update(JobLease).where(JobLease.holder == holder, JobLease.expires_at > now).values(expires_at=now)
    )
    await session.commit()
    return int(released.rowcount)  # type: ignore[attr-defined]
