"""Decimal amounts on the wire: strings or integers, never floats (a float has already lost the exact value)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, PlainSerializer

MAX_DIGITS = 30
DECIMAL_PLACES = 10


def _exact_decimal(value: Any) -> Decimal:
    if isinstance(value, bool | float):
        raise ValueError("must be a decimal string (e.g. '12.50') or an integer, never a float")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        parsed = value
    elif isinstance(value, str) and 0 < len(value) <= 64:
        try:
            parsed = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError("must be a decimal string such as '12.50'") from None
    else:
        raise ValueError("must be a decimal string (e.g. '12.50') or an integer")
    if not parsed.is_finite():
        raise ValueError("must be a finite number")
    return parsed


def decimal_text(value: Decimal) -> str:
    """The exact value without trailing zeros or an exponent: Decimal("0.08500") -> "0.085", 30 -> "30"."""
    return format(value.normalize(), "f")


# A non-negative exact amount: at most 20 digits before the point and 10 after (NUMERIC(30, 10) in PostgreSQL).
Amount = Annotated[
    Decimal,
    BeforeValidator(_exact_decimal),
    Field(ge=0, lt=Decimal(10) ** (MAX_DIGITS - DECIMAL_PLACES), decimal_places=DECIMAL_PLACES),
    PlainSerializer(decimal_text, return_type=str, when_used="json"),
]
