"""The names controllers receive by injection, declared once (Litestar injects by parameter name)."""

from __future__ import annotations

from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.tokens import Actor
from license_server.runtime import Runtime

Db = NamedDependency[AsyncSession]
CurrentActor = NamedDependency[Actor]
RuntimeDep = NamedDependency[Runtime]
