"""Guessing secrets is slowed to a crawl, without locking out a right credential of another kind.

Failures are counted per client address (see ``client_addresses``) *and per credential kind*: a Dify with a wrong
inner-API secret behind a customer's NAT does not stop the owner's admin token or the deployments' polls from that
address. Only *different* wrong secrets count: a misconfigured client retrying one wrong secret counts once, while a
guesser, whose every try is a new secret, reaches the limit after ``rate_limit_failed_auth_per_address`` tries.

On PostgreSQL the counts are shared by every replica (replicas/limits.py: checked in memory, counted in the
database, blocks pushed to every replica), so N replicas enforce one limit.

Once an address is over the limit for a kind, every credential of that kind from it gets 429 until the window clears,
a right one too, and nothing is checked. Accepting a right secret while refusing wrong ones would mean checking every
guess, and the 429 would then just be another way of saying "wrong": guessing would go on at full speed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

from license_server.errors import RateLimited

if TYPE_CHECKING:
    from license_server.runtime import Runtime


class CredentialKind(enum.StrEnum):
    """Each kind has its own failure count per address (the values are limiter key prefixes, not secrets)."""

    ADMIN_TOKEN = "admin-token"  # noqa: S105
    DEPLOYMENT_TOKEN = "deployment-token"  # noqa: S105
    INNER_API_SECRET = "inner-api-secret"  # noqa: S105
    PLATFORM_SECRET = "platform-secret"  # noqa: S105
    # Counted per account *and* address (see console.service): a guesser slows only that account from that address.
    STAFF_PASSWORD = "staff-password"  # noqa: S105
    METRICS_TOKEN = "metrics-token"  # noqa: S105


def limiter_key(kind: CredentialKind, address: str | None) -> str:
    return f"{kind}:{address or 'unknown'}"


def refuse_if_guessing(runtime: Runtime, address: str | None, kind: CredentialKind) -> str:
    """429 for an address with too many different failed secrets of ``kind`` in the window; returns its limiter key."""
    key = limiter_key(kind, address)
    retry = runtime.poll_state.failed_auth_limiter.retry_after(key)
    if retry is not None:
        raise RateLimited(retry, f"too many failed authentications from this address; retry after {retry} s")
    return key


async def record_failed_auth(runtime: Runtime, key: str, secret: str | None) -> None:
    """Count a wrong secret: only its short keyed fingerprint is kept (SecretHasher.fingerprint), so only *different*
    wrong secrets count; on PostgreSQL every replica counts it (replicas/limits.py)."""
    await runtime.poll_state.failed_auth_limiter.record(key, secret)


@dataclass(frozen=True)
class CredentialThrottle:
    """The failed-auth limit for one kind of credential, for a route in a lower layer that checks its own secret
    (``/metrics``: http_wiring.SecretThrottle)."""

    runtime: Runtime
    kind: CredentialKind

    def refuse_if_guessing(self, address: str | None) -> str:
        return refuse_if_guessing(self.runtime, address, self.kind)

    async def record_failure(self, key: str, secret: str | None) -> None:
        await record_failed_auth(self.runtime, key, secret)
