"""Which grants a debit burns. Pure: the account's grants and an amount in, the draws (and what is left over) out.

The order is the ledger's one rule (seed 003, BILLING.md): included credits first, then promotional, then prepaid;
within a band the grant that expires first goes first (grants that never expire last), then the oldest grant. What no
grant covers is ``uncovered``: flex credits when flex is on, a refusal (``credits_exhausted``) when it is off — the
caller decides. Promotional credits sit between included and prepaid because they expire and prepaid credits never
do: burning them before prepaid loses the customer nothing it paid for.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

ZERO = Decimal(0)


class CreditKind(StrEnum):
    INCLUDED = "included"  # per billing cycle, from the plan; forfeited at the period's end
    PROMOTIONAL = "promotional"  # granted by staff with an expiry date
    PREPAID = "prepaid"  # purchased in advance; never expires


# Lower bands burn first.
BAND: dict[CreditKind, int] = {CreditKind.INCLUDED: 0, CreditKind.PROMOTIONAL: 1, CreditKind.PREPAID: 2}


@dataclass(frozen=True)
class GrantBalance:
    """What is left of one grant, as the debit sees it."""

    grant_id: int
    kind: CreditKind
    remaining: Decimal
    granted_at: datetime
    expires_at: datetime | None = None

    def usable_at(self, now: datetime) -> bool:
        return self.remaining > ZERO and (self.expires_at is None or now < self.expires_at)


@dataclass(frozen=True)
class Draw:
    grant_id: int
    kind: CreditKind
    amount: Decimal


@dataclass(frozen=True)
class BurnDown:
    draws: tuple[Draw, ...]
    uncovered: Decimal  # what no grant covered: flex, or the reason for a refusal

    @property
    def covered(self) -> Decimal:
        return sum((draw.amount for draw in self.draws), ZERO)

    def drawn_from(self, kind: CreditKind) -> Decimal:
        return sum((draw.amount for draw in self.draws if draw.kind is kind), ZERO)


def burn_order(grant: GrantBalance) -> tuple[int, bool, datetime, datetime, int]:
    never = grant.expires_at is None
    return (BAND[grant.kind], never, grant.expires_at or grant.granted_at, grant.granted_at, grant.grant_id)


def burn_down(grants: Iterable[GrantBalance], amount: Decimal, *, now: datetime) -> BurnDown:
    """Draw ``amount`` (> 0) from the grants usable at ``now``, in burn order; exact in ``Decimal``."""
    if amount <= ZERO:
        raise ValueError("a debit amount must be positive")
    left = amount
    draws: list[Draw] = []
    for grant in sorted((g for g in grants if g.usable_at(now)), key=burn_order):
        if left == ZERO:
            break
        taken = min(grant.remaining, left)
        draws.append(Draw(grant.grant_id, grant.kind, taken))
        left -= taken
    return BurnDown(tuple(draws), left)
