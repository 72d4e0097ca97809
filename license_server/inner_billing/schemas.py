"""The JSON bodies Dify's ``BillingService`` sends (its field names; contract §3-4). Unknown keys are ignored, as
Dify's own validators drop them, so a newer Dify still gets through."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from license_server.billing.plans.terms import MAX_QUANTITY
from license_server.billing.schemas import EXTERNAL_ID_PATTERN, IdempotencyKey

TenantId = Annotated[str, Field(pattern=EXTERNAL_ID_PATTERN, description="Dify's tenant (workspace) id")]
FeatureKey = Annotated[str, Field(min_length=1, max_length=100, description="trigger_event or api_rate_limit")]
MAX_PLAN_BATCH = 200  # Dify sends at most 200 tenant ids per call (bs:477-481)
Text = Annotated[StrictStr, Field(max_length=10_000)]


class _DifyBody(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ReserveIn(_DifyBody):
    tenant_id: TenantId
    feature_key: FeatureKey
    request_id: IdempotencyKey
    amount: Annotated[StrictInt, Field(ge=1, le=MAX_QUANTITY)] = 1
    meta: dict[str, Any] | None = None  # sent only when set; no caller sets it today


class CommitIn(_DifyBody):
    tenant_id: TenantId
    feature_key: FeatureKey
    reservation_id: IdempotencyKey
    actual_amount: Annotated[StrictInt, Field(ge=0, le=MAX_QUANTITY)]
    meta: dict[str, Any] | None = None


class ReleaseIn(_DifyBody):
    tenant_id: TenantId
    feature_key: FeatureKey
    reservation_id: IdempotencyKey


class PlanBatchIn(_DifyBody):
    tenant_ids: list[TenantId] = Field(max_length=MAX_PLAN_BATCH)


class DeletionFeedbackIn(_DifyBody):
    email: Text
    feedback: Text


class EducationActivateIn(_DifyBody):
    institution: Text = ""
    token: Text = ""
    role: Text = ""


class ComplianceDownloadIn(_DifyBody):
    doc_name: Text
    account_id: Text = ""
    tenant_id: Text = ""
    ip_address: Text = ""
    device_info: Text = ""


class PartnerBindingIn(_DifyBody):
    account_id: Text = ""
    click_id: Text = ""


class NotificationIn(_DifyBody):
    contents: list[dict[str, Any]] = Field(default_factory=list, max_length=100)
    frequency: Text = "once"
    status: Text = "active"
    notification_id: Text | None = None
    start_time: Text | None = None
    end_time: Text | None = None


class NotificationAccountsIn(_DifyBody):
    account_ids: list[Text] = Field(max_length=1000)


class NotificationDismissIn(_DifyBody):
    account_id: Text
