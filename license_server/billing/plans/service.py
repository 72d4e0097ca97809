"""Importing a plan catalogue: create or update plans by code, with their billing terms, in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated

from pydantic import Field, field_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.audit import record_audit
from license_server.auth.tokens import Actor
from license_server.billing.credits.models import CREDIT_SCALE, MAX_CREDITS
from license_server.billing.plans.terms import BillingTerms
from license_server.clock import Clock, utcnow
from license_server.licenses.models import Plan
from license_server.licenses.terms import LicenseTerms, terms_overrides
from license_server.schemas_common import Model

PlanCode = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


class CataloguePlan(Model):
    code: PlanCode
    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: Annotated[str, Field(max_length=2000)] = ""
    terms: LicenseTerms | None = Field(default=None, description="License terms, when the plan also backs licenses")
    billing: BillingTerms

    @field_validator("billing")
    @classmethod
    def _included_credits_fit_the_ledger(cls, billing: BillingTerms) -> BillingTerms:
        """The rollover grants included credits exactly or not at all (it skips a plan whose amount the ledger
        cannot hold): refused here, where staff can correct it, instead of a plan that silently grants nothing."""
        amount = billing.included_credits
        if amount >= MAX_CREDITS or amount != amount.quantize(Decimal(1).scaleb(-CREDIT_SCALE)):
            raise ValueError(f"included_credits: at most {CREDIT_SCALE} decimal places, below {MAX_CREDITS:,}")
        return billing


class Catalogue(Model):
    plans: list[CataloguePlan] = Field(min_length=1, max_length=200)


@dataclass(frozen=True)
class ImportResult:
    created: list[str]
    updated: list[str]
    plans: list[Plan]


async def import_catalogue(
    session: AsyncSession, *, actor: Actor, catalogue: Catalogue, clock: Clock = utcnow
) -> ImportResult:
    """Plans are matched by code: new codes are created, known ones get the catalogue's name, description and
    billing terms (license terms are merged, so a plan that also backs licenses keeps what the catalogue leaves out).
    Importing the same file twice changes nothing the second time."""
    codes = [plan.code for plan in catalogue.plans]
    existing = {p.code: p for p in (await session.scalars(select(Plan).where(Plan.code.in_(codes)))).all()}
    created, updated, plans = [], [], []
    now = clock()
    for entry in catalogue.plans:
        billing = entry.billing.model_dump(mode="json")
        plan = existing.get(entry.code)
        if plan is None:
            plan = Plan(
                code=entry.code,
                name=entry.name,
                description=entry.description,
                terms=terms_overrides(entry.terms),
                billing=billing,
                created_at=now,
                updated_at=now,
            )
            session.add(plan)
            existing[entry.code] = plan
            created.append(entry.code)
        else:
            changed = (plan.name, plan.description, plan.billing) != (entry.name, entry.description, billing)
            if entry.terms is not None and terms_overrides(entry.terms) != plan.terms:
                plan.terms = {**plan.terms, **terms_overrides(entry.terms)}
                changed = True
            plan.name, plan.description, plan.billing = entry.name, entry.description, billing
            if changed:
                plan.updated_at = now
                updated.append(entry.code)
        plans.append(plan)
    await session.flush()
    await record_audit(
        session,
        actor=actor,
        action="billing.plans_imported",
        target_type="plan_catalogue",
        target_id="catalogue",
        detail={"codes": codes, "created": created, "updated": updated},
        clock=clock,
    )
    await session.commit()
    return ImportResult(created, updated, plans)


async def list_billing_plans(session: AsyncSession) -> list[Plan]:
    return list((await session.scalars(select(Plan).order_by(Plan.code))).all())
