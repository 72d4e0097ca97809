"""The edge's services: record usage the local product reports, and export it as the next signed usage report."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.edge.store import CURRENT_FIRST, EdgeBinding, EdgeUsage, EdgeUsageReport
from license_server.errors import NotFound, ValidationFailed
from license_server.offline import files
from license_server.offline.install import load_install_key

LIMIT_NAMES = ("workspaces", "members_per_workspace", "licensed_seats")


@dataclass(frozen=True)
class EdgeUsageSummary:
    workspaces: int = 0
    members_per_workspace: int = 0
    licensed_seats: int = 0

    def over_limits(self, claims: dict[str, Any]) -> list[str]:
        """The enabled, non-zero limits of the license file this usage exceeds (the vendor's rule)."""
        limits = claims.get("limits") if isinstance(claims.get("limits"), dict) else {}
        over = []
        for name in LIMIT_NAMES:
            limit = (limits or {}).get(name) or {}
            bound = limit.get("limit", 0) if isinstance(limit, dict) else 0
            if isinstance(limit, dict) and limit.get("enabled") and bound > 0 and getattr(self, name) > bound:
                over.append(name)
        return over


async def usage_summary(session: AsyncSession) -> EdgeUsageSummary:
    """The latest-measured report is the install's usage (one deployment)."""
    latest = await session.scalar(select(EdgeUsage).order_by(*CURRENT_FIRST).limit(1))
    if latest is None:
        return EdgeUsageSummary()
    return EdgeUsageSummary(latest.workspace_count, latest.max_members, latest.seats_used)


@dataclass(frozen=True)
class RecordedUsage:
    report_id: int
    duplicate: bool
    usage: EdgeUsageSummary


async def record_usage(
    session: AsyncSession,
    *,
    measured_at: datetime,
    workspaces: list[tuple[str, int]],
    seats_used: int,
    idempotency_key: str,
    now: datetime,
) -> RecordedUsage:
    if measured_at > now + timedelta(minutes=5):
        raise ValidationFailed("measured_at is in the future", field="measured_at")
    if len({wid for wid, _ in workspaces}) != len(workspaces):
        raise ValidationFailed("workspace ids must be unique", field="workspaces")
    previous = await session.scalar(select(EdgeUsage).where(EdgeUsage.idempotency_key == idempotency_key))
    if previous is None:
        row = EdgeUsage(
            idempotency_key=idempotency_key,
            measured_at=measured_at,
            received_at=now,
            seats_used=seats_used,
            workspace_count=len(workspaces),
            max_members=max((members for _, members in workspaces), default=0),
            workspaces=[{"id": wid, "members": members} for wid, members in workspaces],
        )
        session.add(row)
        try:
            await session.commit()
        except IntegrityError:  # the same key, concurrently: the other request stored it
            await session.rollback()
            previous = await session.scalar(select(EdgeUsage).where(EdgeUsage.idempotency_key == idempotency_key))
            assert previous is not None
        else:
            return RecordedUsage(row.id, False, await usage_summary(session))
    return RecordedUsage(previous.id, True, await usage_summary(session))


class NoBinding(NotFound):
    code = "edge_not_set_up"
    title = "The edge has not loaded a license file yet"


async def export_usage_report(session: AsyncSession, *, data_dir: Path, now: datetime) -> tuple[bytes, int, int]:
    """Sign the usage recorded since the last report as the next link of the chain. (file bytes, seq, measurements).

    Writing the report and advancing the chain is one transaction: a report is either in the chain or not written.
    """
    binding = await session.get(EdgeBinding, 1)
    if binding is None:
        raise NoBinding("start the edge with the license file once before exporting usage")
    key = load_install_key(data_dir)
    last = await session.scalar(
        select(EdgeUsageReport)
        .where(EdgeUsageReport.activation_id == binding.activation_id)
        .order_by(EdgeUsageReport.seq.desc())
        .limit(1)
    )
    through = last.through_usage_id if last else 0
    rows = list(
        await session.scalars(
            select(EdgeUsage).where(EdgeUsage.id > through).order_by(EdgeUsage.measured_at, EdgeUsage.id)
        )
    )
    measurements = [
        files.Measurement(
            measured_at=row.measured_at,
            idempotency_key=row.idempotency_key,
            seats_used=row.seats_used,
            workspaces=tuple((str(w["id"]), int(w["members"])) for w in row.workspaces),
        )
        for row in rows
    ]
    seq = (last.seq if last else 0) + 1
    text = files.build_usage_report(
        install_key=key,
        binding=files.Binding(binding.activation_id, binding.fingerprint, binding.install_key),
        license_id=binding.license_id,
        seq=seq,
        prev=last.hash if last else files.genesis_hash(binding.install_key),
        measurements=measurements,
        now=now,
    )
    session.add(
        EdgeUsageReport(
            activation_id=binding.activation_id,
            seq=seq,
            hash=files.report_hash(text),
            through_usage_id=max((row.id for row in rows), default=through),
            measurements=len(measurements),
            created_at=now,
            text=text.decode("ascii"),
        )
    )
    await session.commit()
    return text, seq, len(measurements)


async def stored_usage_report(session: AsyncSession, *, seq: int) -> bytes:
    """An already exported report, byte for byte (when the file went missing on its way to the vendor)."""
    binding = await session.get(EdgeBinding, 1)
    if binding is None:
        raise NoBinding("start the edge with the license file once before exporting usage")
    report = await session.get(EdgeUsageReport, (binding.activation_id, seq))
    if report is None:
        raise NotFound(f"no usage report {seq} was exported", field="seq", code="usage_report_not_found")
    return report.text.encode("ascii")
