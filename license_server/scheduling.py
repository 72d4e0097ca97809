"""How a domain declares a scheduled job, next to the job itself (collected by ``scheduler.py``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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
