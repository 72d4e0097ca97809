"""Dify Cloud's billing API (``/inner/billing``). Thin: authenticate, parse Dify's request shape, call the service.

Every success is exactly 200 (Dify's client treats 201 and 204 as errors); every refusal is the project's problem
response, whose body Dify never reads. The secret is Dify's ``Billing-Api-Secret-Key`` header: a platform secret.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

from litestar import Controller, MediaType, Request, delete, get, post, put
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response.base import ASGIResponse

from license_server.billing.accounts.snapshots import PlatformSnapshot
from license_server.billing.schemas import EXTERNAL_ID_PATTERN
from license_server.errors import ValidationFailed
from license_server.inner_billing import service
from license_server.inner_billing.schemas import (
    CommitIn,
    ComplianceDownloadIn,
    DeletionFeedbackIn,
    EducationActivateIn,
    NotificationAccountsIn,
    NotificationDismissIn,
    NotificationIn,
    PartnerBindingIn,
    PlanBatchIn,
    ReleaseIn,
    ReserveIn,
)
from license_server.inner_billing.service import InnerBilling
from license_server.schemas_common import problem_spec

INNER_BILLING_PREFIX = "/inner/billing"
SECRET_HEADER = "Billing-Api-Secret-Key"  # noqa: S105 - the header's name, not a secret
STATE_KEY = "inner_billing"  # an app serving these routes puts its InnerBilling in app.state under this key
_SECRET_HEADER_KEY = SECRET_HEADER.lower().encode("latin-1")
_TENANT_ID = re.compile(EXTERNAL_ID_PATTERN)
TenantQuery = Annotated[str, QueryParameter(pattern=EXTERNAL_ID_PATTERN)]
Text = Annotated[str, QueryParameter(max_length=1000)]
_ERRORS = {
    401: problem_spec("Missing, unknown or revoked Billing-Api-Secret-Key (a platform secret)"),
    429: problem_spec("Too many failed authentications from this address; see Retry-After"),
}
_JSON_OBJECT = {200: ResponseSpec(dict[str, Any], description="Dify's shape (docs/inner-billing.md)"), **_ERRORS}
_RESERVE = {
    **_JSON_OBJECT,
    409: problem_spec("idempotency_key_reused (the request_id with another amount) or quota_kind_mismatch"),
}
_RESERVATION = {
    **_JSON_OBJECT,
    404: problem_spec("reservation_not_found: no reservation with this reservation_id"),
    409: problem_spec("reservation_closed (released or expired), idempotency_key_reused (another actual_amount)"),
}
_LEGACY_USAGE = {
    **_JSON_OBJECT,
    403: problem_spec("subscription_limit_reached"),
    409: problem_spec("quota_kind_mismatch"),
}
_LEGACY_REFUND = {
    **_JSON_OBJECT,
    404: problem_spec("usage_record_not_found"),
    409: problem_spec("not_refundable"),
}


def _billing(connection: ASGIConnection[Any, Any, Any, Any]) -> InnerBilling:
    billing: InnerBilling = connection.app.state[STATE_KEY]
    return billing


def _secret(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The raw header value, read from the ASGI scope (cheaper than building the headers object on the hot path)."""
    for name, value in connection.scope["headers"]:
        if name == _SECRET_HEADER_KEY:
            return bytes(value).decode("latin-1")
    return None


async def _authenticate(connection: ASGIConnection[Any, Any, Any, Any]) -> PlatformSnapshot:
    address = connection.client.host if connection.client else None
    return await service.authenticate(_billing(connection), _secret(connection), address=address)


async def authenticate_billing_secret(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """The guard of the routes that take input: it runs before the query and body are read, so a bad secret is 401
    whatever the input. (The two hot reads authenticate in their handlers: a guard costs a copy of the route handler
    per request, which they do without.)"""
    connection.state.billing_platform = await _authenticate(connection)


def _platform(request: Request[Any, Any, Any]) -> tuple[InnerBilling, PlatformSnapshot]:
    platform: PlatformSnapshot = request.state.billing_platform
    return _billing(request), platform


def _tenant_of(request: Request[Any, Any, Any]) -> str:
    tenant_id = request.query_params.get("tenant_id")
    if not isinstance(tenant_id, str) or not _TENANT_ID.match(tenant_id):
        raise ValidationFailed("tenant_id must be 1-200 letters, digits and _.:@-", field="tenant_id")
    return tenant_id


def _json_body(body: bytes) -> ASGIResponse:
    return ASGIResponse(body=body, media_type=MediaType.JSON)


class InnerBillingController(Controller):
    """What Dify's ``BillingService`` calls with ``BILLING_API_URL=https://<server>/inner/billing``."""

    path = INNER_BILLING_PREFIX
    tags = ["inner-billing (Dify Cloud)"]

    # -- the hot reads (four per Dify console page): authenticated here, bodies served as cached -----------------
    @get(
        "/subscription/info",
        summary="Plan, limits and sizes of a workspace (Dify's BillingInfo)",
        responses=_JSON_OBJECT,
    )
    async def subscription_info(self, request: Request[Any, Any, Any]) -> ASGIResponse:
        platform = await _authenticate(request)
        return _json_body(await service.subscription_info(_billing(request), platform, _tenant_of(request)))

    @get("/quota/info", summary="Usage and limit of trigger_event and api_rate_limit", responses=_JSON_OBJECT)
    async def quota_info(self, request: Request[Any, Any, Any]) -> ASGIResponse:
        platform = await _authenticate(request)
        return _json_body(await service.quota_info(_billing(request), platform, _tenant_of(request)))

    # -- quota writes ------------------------------------------------------------------------------------------------
    @post(
        "/quota/reserve",
        status_code=200,
        summary='Hold quota (idempotent by request_id); exhausted: reservation_id is ""',
        responses=_RESERVE,
        guards=[authenticate_billing_secret],
    )
    async def reserve(self, request: Request[Any, Any, Any], data: JSONBody[ReserveIn]) -> dict[str, Any]:
        billing, platform = _platform(request)
        return await service.reserve(
            billing,
            platform,
            tenant_id=data.tenant_id,
            feature_key=data.feature_key,
            request_id=data.request_id,
            amount=data.amount,
        )

    @post(
        "/quota/commit",
        status_code=200,
        summary="Turn a hold into usage of actual_amount; the rest is refunded",
        responses=_RESERVATION,
        guards=[authenticate_billing_secret],
    )
    async def commit(self, request: Request[Any, Any, Any], data: JSONBody[CommitIn]) -> dict[str, Any]:
        billing, platform = _platform(request)
        return await service.commit(
            billing,
            platform,
            tenant_id=data.tenant_id,
            feature_key=data.feature_key,
            reservation_id=data.reservation_id,
            actual_amount=data.actual_amount,
        )

    @post(
        "/quota/release",
        status_code=200,
        summary="Free an uncommitted hold (idempotent; a no-op after commit)",
        responses=_RESERVATION,
        guards=[authenticate_billing_secret],
    )
    async def release(self, request: Request[Any, Any, Any], data: JSONBody[ReleaseIn]) -> dict[str, Any]:
        billing, platform = _platform(request)
        return await service.release(
            billing,
            platform,
            tenant_id=data.tenant_id,
            feature_key=data.feature_key,
            reservation_id=data.reservation_id,
        )

    # -- plan reads ----------------------------------------------------------------------------------------------
    @get(
        "/subscription/knowledge-rate-limit",
        summary="Knowledge-base requests per minute, as JSON numbers",
        responses=_JSON_OBJECT,
        guards=[authenticate_billing_secret],
    )
    async def knowledge_rate_limit(self, request: Request[Any, Any, Any], tenant_id: TenantQuery) -> dict[str, Any]:
        billing, platform = _platform(request)
        return await service.knowledge_rate_limit(billing, platform, tenant_id)

    @post(
        "/subscription/plan/batch",
        status_code=200,
        summary="Plan name and paid-until moment of up to 200 workspaces",
        responses=_JSON_OBJECT,
        guards=[authenticate_billing_secret],
    )
    async def plan_batch(self, request: Request[Any, Any, Any], data: JSONBody[PlanBatchIn]) -> dict[str, Any]:
        billing, platform = _platform(request)
        return await service.plan_batch(billing, platform, data.tenant_ids)

    @get(
        "/subscription/cleanup/whitelist",
        summary="Workspaces exempt from Dify's sandbox data cleanup (none are kept here: [])",
        responses=_JSON_OBJECT,
        guards=[authenticate_billing_secret],
    )
    async def cleanup_whitelist(self) -> dict[str, Any]:
        # The billing core has no cleanup exemption; a paid workspace is protected by its plan name instead.
        return {"data": []}

    # -- links ----------------------------------------------------------------------------------------------------
    @get(
        "/subscription/payment-link",
        summary="Where Dify sends a user to pay for a plan: Stripe's checkout for an open invoice of that plan, "
        "else the configured link",
        responses=_JSON_OBJECT,
        guards=[authenticate_billing_secret],
    )
    async def payment_link(
        self,
        request: Request[Any, Any, Any],
        tenant_id: TenantQuery,
        plan: Text,
        interval: Text,
        prefilled_email: Text = "",
    ) -> dict[str, Any]:
        billing, platform = _platform(request)
        return await service.subscription_link(
            billing, platform, plan=plan, interval=interval, prefilled_email=prefilled_email, tenant_id=tenant_id
        )

    @get(
        "/invoices",
        summary="Where Dify sends a user to see invoices: a one-time link to the workspace's portal Invoices page, "
        "else the configured link",
        responses=_JSON_OBJECT,
        guards=[authenticate_billing_secret],
    )
    async def invoices(
        self, request: Request[Any, Any, Any], tenant_id: TenantQuery, prefilled_email: Text = ""
    ) -> dict[str, Any]:
        billing, platform = _platform(request)
        # Built on the address the caller reached this server by (behind a proxy, its forwarded address), as the
        # platform API's portal links are.
        return await service.invoices_link(
            billing, platform, base_url=str(request.base_url), tenant_id=tenant_id, prefilled_email=prefilled_email
        )

    @get(
        "/model-provider/payment-link",
        summary="Where Dify sends a user to buy model-provider credits (the configured link)",
        responses=_JSON_OBJECT,
        guards=[authenticate_billing_secret],
    )
    async def model_provider_payment_link(
        self,
        request: Request[Any, Any, Any],
        tenant_id: TenantQuery,
        provider_name: Text,
        account_id: Text = "",
        prefilled_email: Text = "",
    ) -> dict[str, Any]:
        billing, _ = _platform(request)
        return service.link(
            billing.config.model_provider_payment_url,
            provider_name=provider_name,
            tenant_id=tenant_id,
            account_id=account_id,
            prefilled_email=prefilled_email,
        )

    # -- legacy usage (no caller in Dify today) ------------------------------------------------------------------
    @post(
        "/tenant-feature-usage/usage",
        status_code=200,
        summary="Legacy: consume -delta of a feature (query parameters, no body)",
        responses=_LEGACY_USAGE,
        guards=[authenticate_billing_secret],
    )
    async def legacy_usage(
        self,
        request: Request[Any, Any, Any],
        tenant_id: TenantQuery,
        feature_key: Text,
        delta: Annotated[int, QueryParameter(ge=-(10**15), le=10**15)],
    ) -> dict[str, Any]:
        billing, platform = _platform(request)
        return await service.legacy_usage(billing, platform, tenant_id=tenant_id, feature_key=feature_key, delta=delta)

    @post(
        "/tenant-feature-usage/refund",
        status_code=200,
        summary="Legacy: reverse one consumption by its history_id, once",
        responses=_LEGACY_REFUND,
        guards=[authenticate_billing_secret],
    )
    async def legacy_refund(
        self,
        request: Request[Any, Any, Any],
        quota_usage_history_id: Annotated[str, QueryParameter(max_length=100)],
    ) -> dict[str, Any]:
        billing, platform = _platform(request)
        return await service.legacy_refund(billing, platform, history_id=quota_usage_history_id)

    @get(
        "/billing/tenant_feature_plan/usage",
        summary="Legacy: used, limit and remaining of one feature (-1: unlimited)",
        responses=_JSON_OBJECT,
        guards=[authenticate_billing_secret],
    )
    async def legacy_usage_info(
        self, request: Request[Any, Any, Any], tenant_id: TenantQuery, feature_key: Text
    ) -> dict[str, Any]:
        billing, platform = _platform(request)
        return await service.legacy_usage_info(billing, platform, tenant_id=tenant_id, feature_key=feature_key)

    @get(
        "/tenant-feature-usage/info",
        summary="Deprecated: the same answer as /quota/info",
        responses=_JSON_OBJECT,
        guards=[authenticate_billing_secret],
    )
    async def legacy_info(self, request: Request[Any, Any, Any], tenant_id: TenantQuery) -> ASGIResponse:
        billing, platform = _platform(request)
        return _json_body(await service.quota_info(billing, platform, tenant_id))

    # -- Dify-cloud extras: documented defaults (docs/inner-billing.md), so Dify never errors ----------------------
    @delete(
        "/account",
        status_code=200,
        summary="An account was deleted in Dify (this server keeps no Dify user data)",
        responses=_JSON_OBJECT,
        guards=[authenticate_billing_secret],
    )
    async def delete_account(self, account_id: Text) -> dict[str, Any]:
        return {"result": "success"}

    @get(
        "/account/in-freeze",
        summary="Whether an e-mail is frozen after an account deletion (never, here)",
        responses=_JSON_OBJECT,
        guards=[authenticate_billing_secret],
    )
    async def account_in_freeze(self, email: Text) -> dict[str, Any]:
        return {"data": False}  # a JSON boolean: the string "false" would read as True in Dify

    @post(
        "/account/delete-feedback",
        status_code=200,
        summary="Feedback left when deleting an account (accepted, not kept)",
        responses=_JSON_OBJECT,
        guards=[authenticate_billing_secret],
    )
    async def account_delete_feedback(self, data: JSONBody[DeletionFeedbackIn]) -> dict[str, Any]:
        return {"result": "success"}

    @get(
        "/education/verify",
        summary="Education verification (not offered: an empty token)",
        responses=_JSON_OBJECT,
        guards=[authenticate_billing_secret],
    )
    async def education_verify(self, account_id: Text) -> dict[str, Any]:
        return {"token": ""}

    @get(
        "/education/status",
        summary="Education status (not offered: never a student)",
        responses=_JSON_OBJECT,
        guards=[authenticate_billing_secret],
    )
    async def education_status(self, account_id: Text) -> dict[str, Any]:
        # expire_at is parsed with datetime.fromisoformat by Dify: the epoch, a valid ISO time that means "none".
        return {"result": False, "is_student": False, "allow_refresh": False, "expire_at": "1970-01-01T00:00:00+00:00"}

    @post(
        "/education/",
        status_code=200,
        summary="Education activation (not offered)",
        responses=_JSON_OBJECT,
        guards=[authenticate_billing_secret],
    )
    async def education_activate(
        self, account_id: Text, data: JSONBody[EducationActivateIn], curr_tenant_id: Text = ""
    ) -> dict[str, Any]:
        return {"message": "education plans are not offered on this server"}

    @get(
        "/education/autocomplete",
        summary="Institution names (none)",
        responses=_JSON_OBJECT,
        guards=[authenticate_billing_secret],
    )
    async def education_autocomplete(
        self,
        keywords: Text = "",
        page: Annotated[int, QueryParameter(ge=0, le=10**6)] = 0,
        limit: Annotated[int, QueryParameter(ge=0, le=1000)] = 20,
    ) -> dict[str, Any]:
        return {"data": [], "curr_page": page, "has_next": False}

    @post(
        "/compliance/download",
        status_code=200,
        summary="A compliance document's download link (the configured link)",
        responses=_JSON_OBJECT,
        guards=[authenticate_billing_secret],
    )
    async def compliance_download(
        self, request: Request[Any, Any, Any], data: JSONBody[ComplianceDownloadIn]
    ) -> dict[str, Any]:
        billing, _ = _platform(request)
        return service.link(
            billing.config.compliance_download_url,
            doc_name=data.doc_name,
            tenant_id=data.tenant_id,
            account_id=data.account_id,
        )

    @put(
        "/partners/{partner_key:str}/tenants",
        summary="A partner referral binding (accepted, not kept)",
        responses=_JSON_OBJECT,
        guards=[authenticate_billing_secret],
    )
    async def partner_tenants(self, partner_key: FromPath[str], data: JSONBody[PartnerBindingIn]) -> dict[str, Any]:
        return {"result": "success"}

    @get(
        "/notifications/active",
        summary="The account's active notification (none)",
        responses=_JSON_OBJECT,
        guards=[authenticate_billing_secret],
    )
    async def active_notification(self, account_id: Text) -> dict[str, Any]:
        return {"shouldShow": False, "notifications": []}

    @post(
        "/notifications",
        status_code=200,
        summary="Create or update a notification (not kept: /notifications/active shows none)",
        responses=_JSON_OBJECT,
        guards=[authenticate_billing_secret],
    )
    async def upsert_notification(self, data: JSONBody[NotificationIn]) -> dict[str, Any]:
        return {"notificationId": data.notification_id or str(uuid.uuid4())}

    @post(
        "/notifications/{notification_id:str}/accounts",
        status_code=200,
        summary="Target accounts of a notification (not kept: none are added)",
        responses=_JSON_OBJECT,
        guards=[authenticate_billing_secret],
    )
    async def notification_accounts(
        self, notification_id: FromPath[str], data: JSONBody[NotificationAccountsIn]
    ) -> dict[str, Any]:
        return {"count": 0}

    @post(
        "/notifications/{notification_id:str}/dismiss",
        status_code=200,
        summary="An account dismissed a notification",
        responses=_JSON_OBJECT,
        guards=[authenticate_billing_secret],
    )
    async def dismiss_notification(
        self, notification_id: FromPath[str], data: JSONBody[NotificationDismissIn]
    ) -> dict[str, Any]:
        return {"result": "success"}

    @post(
        "/tenant_utms",
        status_code=200,
        summary="UTM parameters of a workspace's sign-up (query parameters; accepted, not kept)",
        responses=_JSON_OBJECT,
        guards=[authenticate_billing_secret],
    )
    async def tenant_utms(self, tenant_id: Text = "") -> dict[str, Any]:
        return {"result": "success"}
