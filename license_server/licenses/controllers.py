"""Admin routes for customers, plans and licenses: parse, call one service function, serialise."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from litestar import Controller, get, patch, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from license_server.auth.guards import CurrentActor, needs
from license_server.auth.tokens import Permission
from license_server.dependencies import Db, Limit, Offset, RuntimeDep
from license_server.errors import ValidationFailed
from license_server.licenses import service
from license_server.licenses.schemas import (
    ActionRequest,
    CustomerCreate,
    CustomerOut,
    CustomerUpdate,
    LicenseIssue,
    LicenseOut,
    LicenseUpdate,
    LicenseWithKey,
    PlanCreate,
    PlanOut,
    PlanUpdate,
    RenewRequest,
    license_out,
    license_with_key,
)
from license_server.lifecycle.status import Status
from license_server.schemas_common import Page


class CustomerController(Controller):
    path = "/v1/admin/customers"
    tags = ["customers"]

    @post("/", opt=needs(Permission.MANAGE_CUSTOMERS), summary="Create a customer")
    async def create(
        self, data: JSONBody[CustomerCreate], db: Db, actor: CurrentActor, runtime: RuntimeDep
    ) -> CustomerOut:
        customer = await service.create_customer(
            db,
            actor=actor,
            name=data.name,
            contact_email=data.contact_email,
            external_id=data.external_id,
            clock=runtime.clock,
        )
        return CustomerOut.model_validate(customer)

    @get("/", opt=needs(Permission.READ), summary="List customers")
    async def list_(self, db: Db, limit: Limit = 50, offset: Offset = 0) -> Page[CustomerOut]:
        rows, total = await service.list_customers(db, limit=limit, offset=offset)
        return Page(items=[CustomerOut.model_validate(r) for r in rows], total=total, limit=limit, offset=offset)

    @get("/{customer_id:uuid}", opt=needs(Permission.READ), summary="Get a customer")
    async def get_(self, db: Db, customer_id: FromPath[uuid.UUID]) -> CustomerOut:
        return CustomerOut.model_validate(await service.get_customer(db, customer_id))

    @patch(
        "/{customer_id:uuid}",
        opt=needs(Permission.MANAGE_CUSTOMERS),
        summary="Update a customer (the fields sent; null clears the email or external id)",
        description="The name and external id are in the customer's signed license documents, re-signed at the "
        "next poll.",
    )
    async def update(
        self,
        data: JSONBody[CustomerUpdate],
        db: Db,
        actor: CurrentActor,
        runtime: RuntimeDep,
        customer_id: FromPath[uuid.UUID],
    ) -> CustomerOut:
        if "name" in data.model_fields_set and data.name is None:
            raise ValidationFailed("name cannot be cleared; send a new name", field="name")
        sent = data.model_fields_set
        customer = await service.update_customer(
            db,
            actor=actor,
            customer_id=customer_id,
            name=data.name,
            contact_email=data.contact_email if "contact_email" in sent else service.KEEP,
            external_id=data.external_id if "external_id" in sent else service.KEEP,
            clock=runtime.clock,
        )
        return CustomerOut.model_validate(customer)


class PlanController(Controller):
    path = "/v1/admin/plans"
    tags = ["plans"]

    @post("/", opt=needs(Permission.MANAGE_PLANS), summary="Create a plan (a named template of license terms)")
    async def create(self, data: JSONBody[PlanCreate], db: Db, actor: CurrentActor, runtime: RuntimeDep) -> PlanOut:
        plan = await service.create_plan(
            db,
            actor=actor,
            code=data.code,
            name=data.name,
            description=data.description,
            terms=data.terms,
            clock=runtime.clock,
        )
        return PlanOut.model_validate(plan)

    @get("/", opt=needs(Permission.READ), summary="List plans")
    async def list_(self, db: Db, limit: Limit = 50, offset: Offset = 0) -> Page[PlanOut]:
        rows, total = await service.list_plans(db, limit=limit, offset=offset)
        return Page(items=[PlanOut.model_validate(r) for r in rows], total=total, limit=limit, offset=offset)

    @get("/{plan_ref:str}", opt=needs(Permission.READ), summary="Get a plan by id or code")
    async def get_(self, db: Db, plan_ref: FromPath[str]) -> PlanOut:
        return PlanOut.model_validate(await service.resolve_plan(db, plan_ref))

    @patch("/{plan_ref:str}", opt=needs(Permission.MANAGE_PLANS), summary="Update a plan")
    async def update(
        self,
        data: JSONBody[PlanUpdate],
        db: Db,
        actor: CurrentActor,
        runtime: RuntimeDep,
        plan_ref: FromPath[str],
    ) -> PlanOut:
        plan = await service.update_plan(
            db,
            actor=actor,
            plan_ref=plan_ref,
            name=data.name,
            description=data.description,
            terms=data.terms,
            clock=runtime.clock,
        )
        return PlanOut.model_validate(plan)


class LicenseController(Controller):
    path = "/v1/admin/licenses"
    tags = ["licenses"]

    @post(
        "/",
        opt=needs(Permission.ISSUE_LICENSES),
        summary="Issue a license",
        description="The response is the only time the license key is shown.",
    )
    async def issue(
        self, data: JSONBody[LicenseIssue], db: Db, actor: CurrentActor, runtime: RuntimeDep
    ) -> LicenseWithKey:
        issued = await service.issue_license(
            db,
            actor=actor,
            hasher=runtime.hasher,
            customer_id=data.customer_id,
            expires_at=data.expires_at,
            starts_at=data.starts_at,
            plan_ref=data.plan,
            terms=data.terms,
            notes=data.notes,
            metadata=data.metadata,
            clock=runtime.clock,
        )
        return license_with_key(issued)

    @get(
        "/",
        opt=needs(Permission.READ),
        summary="List licenses",
        description="`status` filters on the status last materialised; each item shows the status computed now.",
    )
    async def list_(
        self,
        db: Db,
        runtime: RuntimeDep,
        limit: Limit = 50,
        offset: Offset = 0,
        status: FromQuery[Status | None] = None,
        customer_id: FromQuery[uuid.UUID | None] = None,
        expires_within_days: Annotated[
            int | None, QueryParameter(ge=0, le=36500, schema_extra={"minimum": 0, "maximum": 36500})
        ] = None,
    ) -> Page[LicenseOut]:
        views, total = await service.list_licenses(
            db,
            limit=limit,
            offset=offset,
            status=status.value if status else None,
            customer_id=customer_id,
            expires_within=timedelta(days=expires_within_days) if expires_within_days is not None else None,
            clock=runtime.clock,
        )
        return Page(items=[license_out(v) for v in views], total=total, limit=limit, offset=offset)

    @get("/{license_id:uuid}", opt=needs(Permission.READ), summary="Get a license with its computed status")
    async def get_(self, db: Db, runtime: RuntimeDep, license_id: FromPath[uuid.UUID]) -> LicenseOut:
        return license_out(await service.get_license(db, license_id, clock=runtime.clock))

    @patch("/{license_id:uuid}", opt=needs(Permission.MANAGE_LICENSES), summary="Update a license's terms")
    async def update(
        self,
        data: JSONBody[LicenseUpdate],
        db: Db,
        actor: CurrentActor,
        runtime: RuntimeDep,
        license_id: FromPath[uuid.UUID],
    ) -> LicenseOut:
        view = await service.update_license(
            db,
            actor=actor,
            license_id=license_id,
            terms=data.terms,
            starts_at=data.starts_at,
            plan_ref=data.plan,
            notes=data.notes,
            metadata=data.metadata,
            clock=runtime.clock,
        )
        return license_out(view)

    @post(
        "/{license_id:uuid}/actions/renew",
        opt=needs(Permission.ISSUE_LICENSES),
        status_code=200,
        summary="Renew: move the expiry later",
    )
    async def renew(
        self,
        data: JSONBody[RenewRequest],
        db: Db,
        actor: CurrentActor,
        runtime: RuntimeDep,
        license_id: FromPath[uuid.UUID],
    ) -> LicenseOut:
        return license_out(
            await service.renew_license(
                db, actor=actor, license_id=license_id, expires_at=data.expires_at, clock=runtime.clock
            )
        )

    @post(
        "/{license_id:uuid}/actions/suspend",
        opt=needs(Permission.MANAGE_LICENSES),
        status_code=200,
        summary="Suspend (reversible)",
    )
    async def suspend(
        self,
        db: Db,
        actor: CurrentActor,
        runtime: RuntimeDep,
        license_id: FromPath[uuid.UUID],
        data: JSONBody[ActionRequest | None] = None,
    ) -> LicenseOut:
        return license_out(
            await service.suspend_license(
                db,
                actor=actor,
                license_id=license_id,
                reason=data.reason if data else "",
                clock=runtime.clock,
            )
        )

    @post(
        "/{license_id:uuid}/actions/reinstate",
        opt=needs(Permission.MANAGE_LICENSES),
        status_code=200,
        summary="Reinstate a suspended license",
    )
    async def reinstate(
        self, db: Db, actor: CurrentActor, runtime: RuntimeDep, license_id: FromPath[uuid.UUID]
    ) -> LicenseOut:
        return license_out(await service.reinstate_license(db, actor=actor, license_id=license_id, clock=runtime.clock))

    @post(
        "/{license_id:uuid}/actions/revoke",
        opt=needs(Permission.MANAGE_LICENSES),
        status_code=200,
        summary="Revoke (permanent)",
    )
    async def revoke(
        self,
        db: Db,
        actor: CurrentActor,
        runtime: RuntimeDep,
        license_id: FromPath[uuid.UUID],
        data: JSONBody[ActionRequest | None] = None,
    ) -> LicenseOut:
        return license_out(
            await service.revoke_license(
                db,
                actor=actor,
                license_id=license_id,
                reason=data.reason if data else "",
                clock=runtime.clock,
            )
        )

    @post(
        "/{license_id:uuid}/actions/rotate-key",
        opt=needs(Permission.MANAGE_LICENSES),
        status_code=200,
        summary="Replace the license key; the old key stops working. The new key is shown only here.",
    )
    async def rotate_key(
        self, db: Db, actor: CurrentActor, runtime: RuntimeDep, license_id: FromPath[uuid.UUID]
    ) -> LicenseWithKey:
        issued = await service.rotate_license_key(
            db, actor=actor, hasher=runtime.hasher, license_id=license_id, clock=runtime.clock
        )
        return license_with_key(issued)
