"""Every domain's models, imported in one place so Alembic and the app see the whole schema."""

from license_server.auth.models import AdminToken, AuditEvent
from license_server.billing.accounts.models import (
    BillingAccount,
    BillingPlatform,
    LimitOverride,
    PlatformSecret,
    Subscription,
)
from license_server.billing.credits.models import CreditDraw, CreditGrant, CreditMovement
from license_server.billing.usage.models import Reservation, UsageCounter, UsageEvent, UsageGauge, UsageRecord
from license_server.db.base import Base
from license_server.deployments.models import Activation, UsageReport
from license_server.events.models import Event, JobLease, WebhookDelivery, WebhookEndpoint
from license_server.inner_api.models import (
    AppAccessMode,
    AppAllowedUser,
    DefaultWorkspaceMember,
    InnerApiCredential,
    InnerApiLicenseSettings,
    WorkspacePolicyOverride,
)
from license_server.licenses.models import Customer, License, Plan
from license_server.offline.models import OfflineBinding, OfflineUsageImport

__all__ = [
    "Activation",
    "AdminToken",
    "AppAccessMode",
    "AppAllowedUser",
    "AuditEvent",
    "Base",
    "BillingAccount",
    "BillingPlatform",
    "CreditDraw",
    "CreditGrant",
    "CreditMovement",
    "Customer",
    "DefaultWorkspaceMember",
    "Event",
    "InnerApiCredential",
    "InnerApiLicenseSettings",
    "JobLease",
    "License",
    "LimitOverride",
    "OfflineBinding",
    "OfflineUsageImport",
    "Plan",
    "PlatformSecret",
    "Reservation",
    "Subscription",
    "UsageCounter",
    "UsageEvent",
    "UsageGauge",
    "UsageRecord",
    "UsageReport",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WorkspacePolicyOverride",
]
