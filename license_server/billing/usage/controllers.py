"""The usage breakdown over HTTP: by day, by agent, by app and by line item, for one account's period."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.params import FromPath, QueryParameter

from license_server.auth.guards import needs
from license_server.auth.tokens import Permission
from license_server.billing.accounts import service as accounts
from license_server.billing.controllers import (
    PLATFORM_ERRORS,
    PLATFORM_PREFIX,
    account_of_request,
    authenticate_platform,
    billing_state,
    checked_external_id,
)
from license_server.billing.credits.service import current_period
from license_server.billing.schemas import DataOut
from license_server.billing.usage.breakdown import usage_breakdown
from license_server.dependencies import Db
from license_server.errors import ValidationFailed

At = Annotated[
    datetime | None,
    QueryParameter(description="Any moment in the period wanted (ISO 8601 with offset); default: now"),
]


def _moment(value: datetime | None, now: datetime) -> datetime:
    if value is None:
        return now
    if value.tzinfo is None:
        raise ValidationFailed("at: give a timezone offset (e.g. 2026-05-01T00:00:00Z)", field="at")
    return value


class PlatformUsageBreakdownController(Controller):
    path = PLATFORM_PREFIX + "/accounts/{external_id:str}/usage/breakdown"
    tags = ["billing (platform API)"]
    guards = [authenticate_platform]

    @get("/", summary="Cost of the period's usage events by day, agent, app and line item", responses=PLATFORM_ERRORS)
    async def breakdown(
        self, request: Request[Any, Any, Any], external_id: FromPath[str], db: Db, at: At = None
    ) -> DataOut:
        state, snapshot = await account_of_request(request, external_id)
        period = await current_period(db, snapshot.account_id, _moment(at, state.clock()))
        result = await usage_breakdown(db, account_id=snapshot.account_id, period=period)
        return DataOut(data=result.as_json())


class UsageBreakdownAdminController(Controller):
    path = "/v1/admin/billing/platforms/{platform_id:uuid}/accounts/{external_id:str}/usage/breakdown"
    tags = ["billing (admin)"]

    @get("/", summary="The account's usage breakdown for a period", opt=needs(Permission.BILLING_READ))
    async def breakdown(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        platform_id: FromPath[uuid.UUID],
        external_id: FromPath[str],
        at: At = None,
    ) -> dict[str, Any]:
        account = await accounts.get_account(db, platform_id, checked_external_id(external_id))
        period = await current_period(db, account.id, _moment(at, billing_state(request).clock()))
        return (await usage_breakdown(db, account_id=account.id, period=period)).as_json()
