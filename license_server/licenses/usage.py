"""A license's usage against its limits: what the signed document, the inner API and the deployment API report.

The value only; ``deployments.usage`` computes it from the deployments' usage reports. Here, below both, because the
license document (licenses) and the deployments, offline and inner APIs above it all read it.
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
