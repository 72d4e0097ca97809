"""Request bodies are validated by pydantic exactly as the models say.

Litestar's pydantic plugin validates with ``model_validate(value, strict=False)``, and an explicit ``strict=False``
overrides the models' own ``StrictBool``/``StrictInt`` fields: ``0`` and ``"true"`` became booleans. This plugin
passes ``strict=None`` instead, so each field's declared strictness holds (and lax fields stay lax: dates as
strings, as JSON needs).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from litestar.plugins.pydantic import PydanticInitPlugin
from litestar.plugins.pydantic.plugins.init import (  # the plugin's own decoder, with its error mapping
    _dec_pydantic_v2,
    is_pydantic_v2_model_class,
)


class FieldStrictPydanticInitPlugin(PydanticInitPlugin):
    @classmethod
    def decoders(cls, validate_strict: bool = False) -> list[tuple[Callable[[Any], bool], Callable[[Any, Any], Any]]]:
        respecting_fields = partial(_dec_pydantic_v2, strict=None)  # type: ignore[arg-type]  # pydantic takes None
        return [
            (predicate, respecting_fields if predicate is is_pydantic_v2_model_class else decode)
            for predicate, decode in super().decoders(validate_strict)
        ]
