"""Wire shapes of the credits ledger. Amounts are decimal strings (or integers) both ways; floats are refused."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import Field, PlainSerializer

from license_server.billing.credits.burndown import CreditKind
from license_server.billing.credits.models import CREDIT_SCALE, MAX_CREDITS
from license_server.billing.credits.service import CreditBalance, MovementRecord, WriteResult
from license_server.billing.money import Amount
from license_server.schemas_common import Metadata, Model, Page, UTCTimestamp


def credits_text(value: Decimal) -> str:
    """``150``, ``0.25``, ``-30``: no exponent, no trailing zeros."""
    return format(value.normalize(), "f") if value else "0"


CreditAmount = Annotated[
    Amount,
    Field(
        gt=0,
        lt=MAX_CREDITS,
        decimal_places=CREDIT_SCALE,
        description='Credits: a decimal string such as "12.5" (at most 6 decimal places) or an integer; never a float',
    ),
]
CreditsOut = Annotated[Decimal, PlainSerializer(credits_text, return_type=str)]
IdempotencyKey = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="Makes the write idempotent: a replay answers the first result; another request under the same "
        "key is refused with 409 idempotency_key_reused",
    ),
]
Description = Annotated[str, Field(max_length=500)]


class CreditGrantIn(Model):
    kind: CreditKind
    amount: CreditAmount
    idempotency_key: IdempotencyKey
    expires_at: UTCTimestamp | None = Field(
        default=None,
        description="promotional: required; included: defaults to the end of the current period; prepaid: never",
    )
    description: Description = ""


class CreditDebitIn(Model):
    amount: CreditAmount
    idempotency_key: IdempotencyKey
    description: Description = ""
    metadata: Metadata = Field(default_factory=dict)


class GrantOut(Model):
    id: int
    kind: CreditKind
    amount: CreditsOut
    remaining: CreditsOut
    granted_at: datetime
    expires_at: datetime | None


class DrawOut(Model):
    grant_id: int | None = Field(description="null: flex (no grant covered it)")
    kind: str = Field(description="included | promotional | prepaid | flex")
    amount: CreditsOut


class MovementOut(Model):
    id: int
    kind: str = Field(description="grant | debit | forfeit")
    amount: CreditsOut = Field(description='signed change to the account\'s credits, e.g. "-12.5"')
    flex: CreditsOut = Field(description="debits: the part no grant covered, billed in arrears")
    grant: GrantOut | None
    draws: list[DrawOut] = Field(description="debits: the grants drawn from, in burn-down order")
    idempotency_key: str | None
    description: str
    metadata: dict[str, Any]
    actor: str | None
    occurred_at: datetime

    @classmethod
    def of(cls, record: MovementRecord) -> MovementOut:
        movement = record.movement
        return cls(
            id=movement.id,
            kind=movement.kind,
            amount=movement.amount,
            flex=movement.flex,
            grant=GrantOut.model_validate(record.grant) if record.grant is not None else None,
            draws=[DrawOut(grant_id=d.grant_id, kind=d.kind, amount=d.amount) for d in record.draws],
            idempotency_key=movement.idempotency_key,
            description=movement.description,
            metadata=movement.extra_metadata,
            actor=movement.actor,
            occurred_at=movement.occurred_at,
        )


class BalanceOut(Model):
    account_id: uuid.UUID
    as_of: datetime
    available: CreditsOut = Field(description="what grants hold and may still be spent now")
    balance: CreditsOut = Field(description="available minus this period's flex (flex is negative balance)")
    included: CreditsOut
    promotional: CreditsOut
    prepaid: CreditsOut
    flex_enabled: bool
    flex_used: CreditsOut = Field(description="flex drawn in the current period, billed at the next cycle")
    period_start: datetime
    period_end: datetime

    @classmethod
    def of(cls, balance: CreditBalance) -> BalanceOut:
        return cls(
            account_id=balance.account_id,
            as_of=balance.as_of,
            available=balance.available,
            balance=balance.balance,
            included=balance.by_kind[CreditKind.INCLUDED],
            promotional=balance.by_kind[CreditKind.PROMOTIONAL],
            prepaid=balance.by_kind[CreditKind.PREPAID],
            flex_enabled=balance.flex_enabled,
            flex_used=balance.flex_used,
            period_start=balance.period.start,
            period_end=balance.period.end,
        )


class CreditWriteOut(MovementOut):
    replayed: bool = Field(description="true: the key was used before by this same request; this is its result")
    balance: BalanceOut

    @classmethod
    def of_write(cls, result: WriteResult, balance: CreditBalance) -> CreditWriteOut:
        return cls(
            **MovementOut.of(result.record).model_dump(), replayed=result.replayed, balance=BalanceOut.of(balance)
        )


# The platform API answers in seed 004's envelope, ``{"data": ...}``, like the rest of /v1/billing.
class BalanceData(Model):
    data: BalanceOut


class CreditWriteData(Model):
    data: CreditWriteOut


class LedgerData(Model):
    data: Page[MovementOut]
