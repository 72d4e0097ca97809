"""A license's current usage (``licenses.usage.UsageSummary``): the latest-measured report of each live activation,
combined.

Workspaces and seats add up across a license's deployments (each deployment runs its own workspaces); members per
workspace is the largest workspace anywhere, since that is what the per-workspace limit constrains.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ColumnElement, ScalarSelect, Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, aliased

from license_server.deployments.models import Activation, UsageReport
from license_server.licenses.usage import UsageSummary


def current_report_id(activation_id: ColumnElement[uuid.UUID] | InstrumentedAttribute[uuid.UUID]) -> ScalarSelect[int]:
    """The id of an activation's current report: the latest ``measured_at`` (on a tie, the last received).

    Not the highest id: reports arrive late and out of order (a retried post, an offline import of older
    measurements), and a measurement older than the current one must not replace it. Correlated on
    ``activation_id``, so it reads one entry of ``ix_usage_reports_activation_measured`` per activation.
    """
    newest = aliased(UsageReport)
    return (
        select(newest.id)
        .where(newest.activation_id == activation_id)
        .order_by(newest.measured_at.desc(), newest.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def select_current_reports(license_id: uuid.UUID, *columns: Any) -> Select[Any]:
    """``columns`` over each live activation of the license joined with its current report (activations that
    have reported nothing are left out)."""
    return (
        select(*columns)
        .select_from(Activation)
        .join(UsageReport, UsageReport.id == current_report_id(Activation.id))
        .where(Activation.license_id == license_id, Activation.deactivated_at.is_(None))
    )


async def usage_summary(session: AsyncSession, license_id: uuid.UUID) -> UsageSummary:
    row = (
        await session.execute(
            select_current_reports(
                license_id,
                func.count(UsageReport.id),
                func.coalesce(func.sum(UsageReport.workspace_count), 0),
                func.coalesce(func.max(UsageReport.max_members), 0),
                func.coalesce(func.sum(UsageReport.seats_used), 0),
            )
        )
    ).one()
    return UsageSummary(
        workspaces=int(row[1]), members_per_workspace=int(row[2]), licensed_seats=int(row[3]), reported=row[0] > 0
    )
