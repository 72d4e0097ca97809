"""Guessing tokens is slowed to a crawl: failed authentications count per client address, and an address over the
limit gets 429 (even with a right token) until its window clears. Admin and deployment tokens share one limiter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from license_server.errors import RateLimited

if TYPE_CHECKING:
    from license_server.runtime import Runtime


def refuse_if_guessing(runtime: Runtime, address: str | None) -> str:
    """429 for an address with too many failed token authentications in the window; returns its limiter key."""
    key = f"address:{address or 'unknown'}"
    retry = runtime.poll_state.failed_auth_limiter.retry_after(key)
    if retry is not None:
        raise RateLimited(retry, f"too many failed authentications from this address; retry after {retry} s")
    return key


def record_failed_auth(runtime: Runtime, key: str) -> None:
    runtime.poll_state.failed_auth_limiter.hit(key)
