"""How a domain declares a scheduled job, next to the job itself (collected by ``scheduler.py``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from license_server.config import Settings
    from license_server.runtime import Runtime


@dataclass(frozen=True)
class ScheduledJob:
    name: str
    run: Callable[[Runtime], Awaitable[object]]
    interval_seconds: Callable[[Settings], float]
    # Per-process jobs (the check-in flush) run in every serving process; shared jobs may run in a scheduler alone.
    per_process: bool = False


@dataclass
class JobHealth:
    """Consecutive failed runs per job in this process: readiness turns unready at ``unready_after`` and says which
    job, with its last error's type. A good run clears the job's count."""

    unready_after: int = 3
    _failures: dict[str, tuple[int, str]] = field(default_factory=dict)

    def succeeded(self, job: str) -> None:
        self._failures.pop(job, None)

    def failed(self, job: str, error: BaseException) -> int:
        count = self._failures.get(job, (0, ""))[0] + 1
        self._failures[job] = (count, type(error).__name__)
        return count

    def failures(self, job: str) -> int:
        return self._failures.get(job, (0, ""))[0]

    def failing(self) -> dict[str, str]:
        """The jobs past the threshold, each with why: ``failed 3 runs in a row (OperationalError)``."""
        return {
            job: f"failed {count} runs in a row ({error})"
            for job, (count, error) in sorted(self._failures.items())
            if count >= self.unready_after
        }
