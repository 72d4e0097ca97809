"""The names controllers receive by injection, declared once (Litestar injects by parameter name).

In the shared kernel, so every domain's controllers can name them. ``Runtime`` is the composition root, built
from the domains above this module; it is named here as a forward reference and imported for type checking only.
Litestar resolves handler annotations when an app is built: the app factory passes ``Runtime`` in its
``signature_types`` (see ``app.create_app``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, TypeAlias

from litestar.di import NamedDependency
from litestar.params import QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

if TYPE_CHECKING:
    from license_server.runtime import Runtime

Db = NamedDependency[AsyncSession]
RuntimeDep: TypeAlias = NamedDependency["Runtime"]

# Pagination query parameters every list route takes.
Limit = Annotated[int, QueryParameter(ge=1, le=500)]
Offset = Annotated[int, QueryParameter(ge=0, le=10_000_000)]
