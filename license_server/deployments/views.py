"""Read models for vendor staff: activations with their current (latest-measured) usage."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.deployments.models import Activation, UsageReport
from license_server.deployments.schemas import ActivationOut
from license_server.deployments.usage import current_report_id


def _state_conditions(state: str) -> list[Any]:
    if state == "live":
        return [Activation.deactivated_at.is_(None), Activation.lost_at.is_(None)]
    if state == "lost":
        return [Activation.deactivated_at.is_(None), Activation.lost_at.is_not(None)]
    return [Activation.deactivated_at.is_not(None)]


def activation_out(activation: Activation, latest: UsageReport | None) -> ActivationOut:
    usage: dict[str, Any] | None = None
    if latest is not None:
        usage = {
            "measured_at": latest.measured_at.isoformat(),
            "seats_used": latest.seats_used,
            "workspaces": latest.workspaces,
        }
    return ActivationOut(
        id=activation.id,
        license_id=activation.license_id,
        fingerprint=activation.fingerprint,
        hostname=activation.hostname,
        product_version=activation.product_version,
        metadata=activation.extra_metadata,
        first_seen_at=activation.created_at,
        last_seen_at=activation.last_seen_at,
        lost_at=activation.lost_at,
        deactivated_at=activation.deactivated_at,
        deactivated_by=activation.deactivated_by,
        latest_usage=usage,
    )


async def list_activations(
    session: AsyncSession, *, license_id: uuid.UUID | None, state: str | None, limit: int = 500, offset: int = 0
) -> tuple[list[ActivationOut], int]:
    conditions: list[Any] = [] if state is None else _state_conditions(state)
    if license_id is not None:
        conditions.append(Activation.license_id == license_id)
    total = await session.scalar(select(func.count()).select_from(Activation).where(*conditions))
    rows = await session.execute(
        select(Activation, UsageReport)
        .where(*conditions)
        .outerjoin(UsageReport, UsageReport.id == current_report_id(Activation.id))
        .order_by(Activation.created_at, Activation.id)
        .limit(limit)
        .offset(offset)
    )
    return [activation_out(activation, report) for activation, report in rows.all()], int(total or 0)
