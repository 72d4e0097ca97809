"""Bodies of the test clock admin routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import Field, StrictInt, model_validator

from license_server.billing.schemas import ExternalId, Name
from license_server.schemas_common import Model, UTCTimestamp


class ClockCreate(Model):
    name: Name
    frozen_now: UTCTimestamp | None = Field(default=None, description="The clock's first time; default: now")


class ClockAttach(Model):
    platform_id: uuid.UUID
    external_ids: list[ExternalId] = Field(min_length=1, max_length=1000)


class ClockAdvance(Model):
    """Either ``to`` (an instant after the clock's time) or a move by ``months`` and ``days``."""

    to: UTCTimestamp | None = None
    months: Annotated[StrictInt, Field(ge=0, le=120)] = 0
    days: Annotated[StrictInt, Field(ge=0, le=3660)] = 0

    @model_validator(mode="after")
    def _one_way(self) -> ClockAdvance:
        if (self.to is None) == (self.months == 0 and self.days == 0):
            raise ValueError("give either `to`, or `months` and/or `days`")
        return self


class ClockOut(Model):
    id: uuid.UUID
    name: str
    frozen_now: datetime
    created_at: datetime
    created_by: str
    accounts: list[str] = Field(default_factory=list, description="External ids of the attached accounts")


class ClockAdvanced(ClockOut):
    steps: list[datetime] = Field(description="Every instant the clock stopped at to run the jobs, in order")
