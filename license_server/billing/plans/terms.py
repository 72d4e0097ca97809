"""A plan's billing terms: what the hosted half reads from the one plan catalogue licenses use too.

Stored on ``plans.billing`` as JSON; this model validates it on the way in and reads it on the way out.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from license_server.billing.limits import Quota, QuotaKind
from license_server.billing.money import Amount

MAX_QUANTITY = 10**15  # quotas, usage amounts and gauges: far beyond any real count, well inside BIGINT
QuotaKey = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.:-]{0,99}$")]
FeatureKey = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.:-]{0,99}$")]
# A rate card entry names a line item type and what it prices: "llm:gpt-4o" (per token), "tool:web_search" (per
# call), "storage:vector_mb" (per MB).
RateKey = Annotated[str, Field(pattern=r"^(llm|tool|storage):[A-Za-z0-9][A-Za-z0-9_.:/-]{0,99}$")]
Count = Annotated[StrictInt, Field(ge=0, le=MAX_QUANTITY)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QuotaTerm(_Strict):
    kind: QuotaKind
    limit: Count | None = Field(description="null: unlimited; 0: not available on the plan")


class RateLimitTerm(_Strict):
    limit: Annotated[StrictInt, Field(ge=1, le=10**9)]
    window_seconds: Annotated[StrictInt, Field(ge=1, le=31 * 86400)]


class BillingTerms(_Strict):
    price: Amount = Field(default=Decimal(0), description="The plan fee per interval, a decimal string")
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"
    interval: Literal["month", "year"] = "month"
    trial_days: Annotated[StrictInt, Field(ge=0, le=365)] = 0
    quotas: dict[QuotaKey, QuotaTerm] = Field(default_factory=dict, max_length=200)
    features: dict[FeatureKey, StrictBool | Annotated[StrictStr, Field(max_length=200)]] = Field(
        default_factory=dict, max_length=200
    )
    included_credits: Amount = Field(default=Decimal(0), description="Credits granted each cycle, forfeited at reset")
    flex_credit_price: Amount | None = Field(default=None, description="Price of one flex credit; null: no flex")
    rate_limits: dict[QuotaKey, RateLimitTerm] = Field(default_factory=dict, max_length=100)
    rate_card: dict[RateKey, Amount] = Field(
        default_factory=dict, max_length=1000, description="Unit prices of raw line-item quantities"
    )

    def quota_map(self) -> dict[str, Quota]:
        return {key: Quota(term.kind, term.limit) for key, term in self.quotas.items()}


def billing_terms(stored: dict[str, object] | None) -> BillingTerms:
    """A plan's stored billing terms (validated when they were written)."""
    return BillingTerms.model_validate(stored or {})
