"""Request and response bodies of the customers, plans and licenses API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import EmailStr, Field

from license_server.licenses.service import IssuedLicense, LicenseView
from license_server.licenses.terms import LicenseTerms
from license_server.schemas_common import Metadata, Model, UTCTimestamp

Name = Annotated[str, Field(min_length=1, max_length=200)]
PlanCode = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
PlanRef = Annotated[str, Field(min_length=1, max_length=64, description="Plan id or code")]
Notes = Annotated[str, Field(max_length=10_000)]
ActionReason = Annotated[str, Field(max_length=1000)]


class CustomerCreate(Model):
    name: Name
    contact_email: EmailStr | None = None
    external_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None


class CustomerUpdate(Model):
    """Only the fields sent change; ``null`` clears the email or the external id."""

    name: Name | None = None
    contact_email: EmailStr | None = None
    external_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None


class CustomerOut(Model):
    id: uuid.UUID
    name: str
    contact_email: str | None
    external_id: str | None
    created_at: datetime
    updated_at: datetime


class PlanCreate(Model):
    code: PlanCode
    name: Name
    description: Annotated[str, Field(max_length=2000)] = ""
    terms: LicenseTerms | None = None


class PlanUpdate(Model):
    name: Name | None = None
    description: Annotated[str, Field(max_length=2000)] | None = None
    terms: LicenseTerms | None = Field(default=None, description="Merged into the plan's terms")


class PlanOut(Model):
    id: uuid.UUID
    code: str
    name: str
    description: str
    terms: dict[str, Any] = Field(description="The terms this plan sets; others take their defaults")
    created_at: datetime
    updated_at: datetime


class LicenseIssue(Model):
    customer_id: uuid.UUID
    expires_at: UTCTimestamp
    starts_at: UTCTimestamp | None = None
    plan: PlanRef | None = None
    terms: LicenseTerms | None = Field(default=None, description="Overrides of the plan's terms")
    notes: Notes = ""
    metadata: Metadata = Field(default_factory=dict)


class LicenseUpdate(Model):
    starts_at: UTCTimestamp | None = None
    plan: PlanRef | None = None
    terms: LicenseTerms | None = Field(default=None, description="Merged into the license's overrides")
    notes: Notes | None = None
    metadata: Metadata | None = None


class RenewRequest(Model):
    expires_at: UTCTimestamp


class ActionRequest(Model):
    reason: ActionReason = ""


class LicenseOut(Model):
    id: uuid.UUID
    customer_id: uuid.UUID
    customer_name: str
    plan_id: uuid.UUID | None
    plan_code: str | None
    key_hint: str = Field(description="Last characters of the license key, to recognise it")
    status: str
    status_reason: str
    starts_at: datetime
    expires_at: datetime
    terms: dict[str, Any] = Field(description="The overrides this license sets over its plan")
    effective_terms: LicenseTerms
    notes: str
    metadata: dict[str, Any]
    suspended_at: datetime | None
    revoked_at: datetime | None
    first_activated_at: datetime | None
    last_check_in_at: datetime | None
    created_at: datetime
    updated_at: datetime


class LicenseWithKey(LicenseOut):
    key: str = Field(description="The license key. Shown only in this response; store it now.")


def license_out(view: LicenseView) -> LicenseOut:
    license = view.license
    return LicenseOut(
        id=license.id,
        customer_id=license.customer_id,
        customer_name=view.customer.name,
        plan_id=license.plan_id,
        plan_code=view.plan.code if view.plan else None,
        key_hint=license.key_hint,
        status=view.status.status.value,
        status_reason=view.status.reason.value,
        starts_at=license.starts_at,
        expires_at=license.expires_at,
        terms=license.terms,
        effective_terms=view.terms,
        notes=license.notes,
        metadata=license.extra_metadata,
        suspended_at=license.suspended_at,
        revoked_at=license.revoked_at,
        first_activated_at=license.first_activated_at,
        last_check_in_at=license.last_check_in_at,
        created_at=license.created_at,
        updated_at=license.updated_at,
    )


def license_with_key(issued: IssuedLicense) -> LicenseWithKey:
    return LicenseWithKey(**license_out(issued.view).model_dump(), key=issued.key)
