"""When a license's SSO switches last changed, recorded by the licenses service in the transaction that changes terms,
so the time is exact and commits (or rolls back) with the change itself. Dify's inner API reports these times
(``/sso/app/last-update-time``, ``/sso/workspace/last-update-time``) and asks users to sign in again after one.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.db.base import UTCDateTime
from license_server.db.session import dialect_insert
from license_server.licenses.models import InnerApiLicenseSettings, License
from license_server.licenses.terms import LicenseTerms


# The SSO switches whose change time Dify reads: web apps (/sso/app/...) and console sign-in (/sso/workspace/...).
def app_sso_switches(terms: LicenseTerms) -> tuple[object, ...]:
    return (terms.sso.enforced_for_web, terms.sso.web_protocol, terms.webapp_auth.allow_sso)


def signin_sso_switches(terms: LicenseTerms) -> tuple[object, ...]:
    return (terms.sso.enforced_for_signin, terms.sso.signin_protocol)


def changed_switches(before: LicenseTerms, after: LicenseTerms) -> list[str]:
    """The settings columns to move to now: which groups of SSO switches differ."""
    columns = []
    if app_sso_switches(before) != app_sso_switches(after):
        columns.append("sso_app_changed_at")
    if signin_sso_switches(before) != signin_sso_switches(after):
        columns.append("sso_signin_changed_at")
    return columns


async def record_sso_changes(
    session: AsyncSession,
    *,
    before: LicenseTerms,
    after: LicenseTerms,
    now: datetime,
    license_id: uuid.UUID | None = None,
    plan_id: uuid.UUID | None = None,
) -> None:
    """Stamp the change time on one license, or (set-based) on every license of a plan whose terms changed.

    A plan change counts for every license on the plan, also one that overrides the changed switch itself: Dify then
    asks some users to sign in again, which is safe, and the statement stays one INSERT ... SELECT.
    """
    columns = changed_switches(before, after)
    if not columns:
        return
    values = {column: literal(now, UTCDateTime()) for column in columns}
    source = select(License.id, *values.values(), literal(now, UTCDateTime()))
    source = (
        source.where(License.id == license_id) if license_id is not None else source.where(License.plan_id == plan_id)
    )
    statement = dialect_insert(session, InnerApiLicenseSettings).from_select(
        ["license_id", *columns, "updated_at"], source
    )
    statement = statement.on_conflict_do_update(
        index_elements=["license_id"],
        set_={column: statement.excluded[column] for column in [*columns, "updated_at"]},
    )
    await session.execute(statement)
