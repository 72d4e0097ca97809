"""A license's current usage: the newest report of each live activation, combined.

Workspaces and seats add up across a license's deployments (each deployment runs its own workspaces); members per
workspace is the largest workspace anywhere, since that is what the per-workspace limit constrains.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.deployments.models import Activation, UsageReport
from license_server.licenses.terms import LicenseTerms, Limit


@dataclass(frozen=True)
class UsageSummary:
    workspaces: int = 0
    members_per_workspace: int = 0
    licensed_seats: int = 0
    reported: bool = False

    def used(self, limit_name: str) -> int:
        value: int = getattr(self, limit_name)
        return value

    def over_limits(self, terms: LicenseTerms) -> list[str]:
        """Names of the enabled, non-zero limits this usage exceeds."""
        return [name for name in LIMIT_NAMES if is_over(getattr(terms, name), self.used(name))]


LIMIT_NAMES = ("workspaces", "members_per_workspace", "licensed_seats")
NO_USAGE = UsageSummary()


def is_over(limit: Limit, used: int) -> bool:
    return limit.enabled and limit.limit > 0 and used > limit.limit


async def usage_summary(session: AsyncSession, license_id: uuid.UUID) -> UsageSummary:
    latest = (
        select(func.max(UsageReport.id))
        .join(Activation, Activation.id == UsageReport.activation_id)
        .where(UsageReport.license_id == license_id, Activation.deactivated_at.is_(None))
        .group_by(UsageReport.activation_id)
    )
    row = (
        await session.execute(
            select(
                func.count(UsageReport.id),
                func.coalesce(func.sum(UsageReport.workspace_count), 0),
                func.coalesce(func.max(UsageReport.max_members), 0),
                func.coalesce(func.sum(UsageReport.seats_used), 0),
            ).where(UsageReport.id.in_(latest))
        )
    ).one()
    return UsageSummary(
        workspaces=int(row[1]), members_per_workspace=int(row[2]), licensed_seats=int(row[3]), reported=row[0] > 0
    )
