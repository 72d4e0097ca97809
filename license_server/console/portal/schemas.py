"""Wire shapes of the portal-link routes (platform API and admin API)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import Field

from license_server.console.portal.models import PortalRole
from license_server.schemas_common import Model


class PortalLinkIn(Model):
    role: PortalRole = Field(
        description="The customer's role in their organisation: owner, admin and billing:read see the billing pages; "
        "member sees none of them (seed 002)"
    )
    payment_url: Annotated[str, Field(max_length=2000)] | None = Field(
        default=None,
        description="Where the customer updates payment or buys credits (the past-due banner links it); https only",
    )


class PortalLinkOut(Model):
    url: str = Field(description="Open once to start a portal session; the token in it is shown only here")
    expires_at: datetime = Field(description="The link stops working then, used or not")
    role: PortalRole
    link_id: uuid.UUID
    account_id: uuid.UUID | None = None
    customer_id: uuid.UUID | None = None
