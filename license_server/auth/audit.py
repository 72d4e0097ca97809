"""The audit log: every action writes one event, in the same transaction as the change it records."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.models import AuditEvent
from license_server.clock import Clock, utcnow

if TYPE_CHECKING:
    from license_server.auth.tokens import Actor


async def record_audit(
    session: AsyncSession,
    *,
    actor: Actor,
    action: str,
    target_type: str,
    target_id: uuid.UUID | str,
    detail: dict[str, Any] | None = None,
    clock: Clock = utcnow,
) -> AuditEvent:
    event = AuditEvent(
        occurred_at=clock(),
        actor=actor.name,
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        detail=detail or {},
    )
    session.add(event)
    return event


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


async def list_audit_events(
    session: AsyncSession, *, filters: AuditFilter, limit: int, offset: int
) -> tuple[list[AuditEvent], int]:
    conditions = []
    if filters.actor:
        conditions.append(AuditEvent.actor == filters.actor)
    if filters.action:
        conditions.append(AuditEvent.action == filters.action)
    if filters.target_type:
        conditions.append(AuditEvent.target_type == filters.target_type)
    if filters.target_id:
        conditions.append(AuditEvent.target_id == filters.target_id)
    if filters.since:
        conditions.append(AuditEvent.occurred_at >= filters.since)
    if filters.until:
        conditions.append(AuditEvent.occurred_at < filters.until)
    total = await session.scalar(select(func.count()).select_from(AuditEvent).where(*conditions))
    rows = await session.scalars(
        select(AuditEvent).where(*conditions).order_by(AuditEvent.id.desc()).limit(limit).offset(offset)
    )
    return list(rows.all()), int(total or 0)


async def page_audit_events(
    session: AsyncSession, *, filters: AuditFilter, limit: int, before_id: int | None = None
) -> tuple[list[AuditEvent], int | None]:
    """One page of the log, newest first, and the id to pass as ``before_id`` for the next (None on the last). Keyset
    on the primary key, no count: its cost does not grow with the log."""
    conditions = []
    if filters.action:
        conditions.append(AuditEvent.action == filters.action)
    if filters.actor:
        conditions.append(AuditEvent.actor == filters.actor)
    if before_id is not None:
        conditions.append(AuditEvent.id < before_id)
    rows = list(
        (
            await session.scalars(select(AuditEvent).where(*conditions).order_by(AuditEvent.id.desc()).limit(limit + 1))
        ).all()
    )
    page = rows[:limit]
    return page, page[-1].id if len(rows) > limit else None
