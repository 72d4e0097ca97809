"""A license's usage against its limits, as the signed document, the deployment API and the inner API report it.

The value only: ``deployments.usage`` computes it from the deployments' usage reports. It lives here, below them,
because the document's claims (``licenses.documents``) are built from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from license_server.licenses.terms import LicenseTerms, Limit


@dataclass(frozen=True)
class UsageSummary:
    workspaces: int = 0
    members_per_workspace: int = 0
    licensed_seats: int = 0
    reported: bool = False

    def used(self, limit_name: str) -> int:
        value: int = getattr(self, limit_name)
        return value

    def over_limits(self, terms: LicenseTerms) -> list[str]:
        """Names of the enabled, non-zero limits this usage exceeds."""
        return [name for name in LIMIT_NAMES if is_over(getattr(terms, name), self.used(name))]


LIMIT_NAMES = ("workspaces", "members_per_workspace", "licensed_seats")
NO_USAGE = UsageSummary()


def is_over(limit: Limit, used: int) -> bool:
    return limit.enabled and limit.limit > 0 and used > limit.limit
