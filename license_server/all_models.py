"""Every domain's models, imported in one place so Alembic (db/migrations/env.py) and the tests see the whole
schema. At the top of the layers, above every domain it imports; nothing in the server imports it."""

from license_server.auth.models import AdminToken, AuditEvent
from license_server.billing.accounts.models import (
    BillingAccount,
    BillingPlatform,
    LimitOverride,
    PlatformSecret,
    Subscription,
)
from license_server.billing.clocks.models import TestClock, TestClockAccount
from license_server.billing.credits.models import CreditDraw, CreditGrant, CreditMovement
from license_server.billing.invoices.models import CreditNote, Invoice, InvoiceLine, InvoicePdf, NumberSequence
from license_server.billing.payments.models import Payment, StripeCustomer, StripeEvent, StripeObjectState
from license_server.billing.subscriptions.models import SubscriptionPlanChange
from license_server.billing.usage.models import Reservation, UsageCounter, UsageEvent, UsageGauge, UsageRecord
from license_server.console.models import StaffSession, StaffUser
from license_server.console.portal.models import PortalLink, PortalSession
from license_server.db.base import Base
from license_server.deployments.models import Activation, UsageReport
from license_server.events.models import Event, JobLease, WebhookDelivery, WebhookEndpoint
from license_server.inner_api.models import (
    AppAccessMode,
    AppAllowedUser,
    DefaultWorkspaceMember,
    InnerApiCredential,
    WorkspacePolicyOverride,
)
from license_server.licenses.models import Customer, InnerApiLicenseSettings, License, Plan
from license_server.offline.models import OfflineBinding, OfflineUsageImport
from license_server.replicas.models import SharedAuthFailure, SharedRateWindow
from license_server.signing.models import KeyRevocationList

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
    "CreditNote",
    "Customer",
    "DefaultWorkspaceMember",
    "Event",
    "InnerApiCredential",
    "InnerApiLicenseSettings",
    "Invoice",
    "InvoiceLine",
    "InvoicePdf",
    "JobLease",
    "KeyRevocationList",
    "License",
    "LimitOverride",
    "NumberSequence",
    "OfflineBinding",
    "OfflineUsageImport",
    "Payment",
    "Plan",
    "PlatformSecret",
    "PortalLink",
    "PortalSession",
    "Reservation",
    "SharedAuthFailure",
    "SharedRateWindow",
    "StaffSession",
    "StaffUser",
    "StripeCustomer",
    "StripeEvent",
    "StripeObjectState",
    "Subscription",
    "SubscriptionPlanChange",
    "TestClock",
    "TestClockAccount",
    "UsageCounter",
    "UsageEvent",
    "UsageGauge",
    "UsageRecord",
    "UsageReport",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WorkspacePolicyOverride",
]
