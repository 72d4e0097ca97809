"""Job leases: exactly one replica runs a leased job at a time; a crashed holder's lease simply expires."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.events.models import JobLease


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
