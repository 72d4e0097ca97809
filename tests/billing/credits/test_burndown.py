"""The burn-down order, as a pure function: included -> promotional -> prepaid, soonest expiry first within a band,
then the oldest grant; what no grant covers is reported, never invented."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from license_server.billing.credits.burndown import CreditKind, GrantBalance, burn_down

NOW = datetime(2026, 4, 20, tzinfo=UTC)
_ids = itertools.count(1)


def grant(
    kind: CreditKind, remaining: str, *, granted_days_ago: int = 10, expires_in_days: int | None = None
) -> GrantBalance:
    return GrantBalance(
        grant_id=next(_ids),
        kind=kind,
        remaining=Decimal(remaining),
        granted_at=NOW - timedelta(days=granted_days_ago),
        expires_at=None if expires_in_days is None else NOW + timedelta(days=expires_in_days),
    )


def test_included_burns_before_promotional_before_prepaid() -> None:
    prepaid = grant(CreditKind.PREPAID, "20", granted_days_ago=80)
    promotional = grant(CreditKind.PROMOTIONAL, "5", expires_in_days=60)
    included = grant(CreditKind.INCLUDED, "150", expires_in_days=25)
    result = burn_down([prepaid, promotional, included], Decimal("160"), now=NOW)
    assert [(d.grant_id, d.amount) for d in result.draws] == [
        (included.grant_id, Decimal("150")),
        (promotional.grant_id, Decimal("5")),
        (prepaid.grant_id, Decimal("5")),
    ]
    assert result.uncovered == 0


def test_within_a_band_the_soonest_expiring_grant_burns_first_then_the_oldest() -> None:
    late = grant(CreditKind.PROMOTIONAL, "10", expires_in_days=30, granted_days_ago=50)
    soon = grant(CreditKind.PROMOTIONAL, "10", expires_in_days=3, granted_days_ago=1)
    young = grant(CreditKind.PREPAID, "10", granted_days_ago=1)
    old = grant(CreditKind.PREPAID, "10", granted_days_ago=100)
    result = burn_down([late, young, soon, old], Decimal("35"), now=NOW)
    assert [d.grant_id for d in result.draws] == [soon.grant_id, late.grant_id, old.grant_id, young.grant_id]
    assert result.draws[-1].amount == Decimal("5")


def test_expired_and_empty_grants_are_never_drawn_from() -> None:
    expired = grant(CreditKind.PROMOTIONAL, "10", expires_in_days=0)  # expires exactly now: gone
    empty = grant(CreditKind.PREPAID, "0")
    result = burn_down([expired, empty], Decimal("1"), now=NOW)
    assert result.draws == ()
    assert result.uncovered == Decimal("1")


def test_what_no_grant_covers_is_uncovered_exactly() -> None:
    result = burn_down([grant(CreditKind.INCLUDED, "0.1", expires_in_days=5)], Decimal("0.3"), now=NOW)
    assert result.covered == Decimal("0.1")
    assert result.uncovered == Decimal("0.2")  # 0.3 - 0.1 in binary floating point is 0.19999999999999998


@pytest.mark.parametrize("amount", ["0", "-1"])
def test_a_debit_must_be_positive(amount: str) -> None:
    with pytest.raises(ValueError, match="positive"):
        burn_down([], Decimal(amount), now=NOW)


amounts = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal("1000"), places=6)


@given(remaining=st.lists(amounts, max_size=8), amount=amounts)
def test_draws_plus_uncovered_equal_the_amount_and_no_grant_is_overdrawn(
    remaining: list[Decimal], amount: Decimal
) -> None:
    grants = [grant(CreditKind.PREPAID, str(r), granted_days_ago=i) for i, r in enumerate(remaining)]
    result = burn_down(grants, amount, now=NOW)
    assert result.covered + result.uncovered == amount
    by_id = {g.grant_id: g.remaining for g in grants}
    assert all(Decimal(0) < d.amount <= by_id[d.grant_id] for d in result.draws)
    assert result.uncovered == max(Decimal(0), amount - sum(remaining, Decimal(0)))
