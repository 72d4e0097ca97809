"""The names controllers receive by injection, declared once (Litestar injects by parameter name)."""

from __future__ import annotations

from typing import Annotated

from litestar.di import NamedDependency
from litestar.params import QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.tokens import Actor
from license_server.runtime import Runtime

Db = NamedDependency[AsyncSession]
CurrentActor = NamedDependency[Actor]
RuntimeDep = NamedDependency[Runtime]

# Pagination query parameters every list route takes.
Limit = Annotated[int, QueryParameter(ge=1, le=500)]
Offset = Annotated[int, QueryParameter(ge=0, le=10_000_000)]
