"""The OpenAPI schema says what the validators enforce.

Litestar builds component schemas from pydantic models field by field and drops what it does not map: the
``extra="forbid"`` of every request body (``additionalProperties: false``), string ``pattern`` constraints, and the
shape of ``dict`` fields with constrained keys (rendered as arrays). This plugin takes those three facts from
pydantic's own JSON schema of the model, so clients and fuzzers are told exactly what the server accepts.
"""

from __future__ import annotations

import typing
from typing import Any

from litestar._openapi.schema_generation import SchemaCreator
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.plugins.pydantic import PydanticSchemaPlugin
from litestar.typing import FieldDefinition
from pydantic import BaseModel


def _unwrap_dict(annotation: Any) -> tuple[Any, Any] | None:
    """(key type, value type) of a ``dict[K, V]``, possibly optional; None for anything else."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap_dict(typing.get_args(annotation)[0])
    if origin is dict:
        key, value = typing.get_args(annotation)
        return key, value
    for arg in typing.get_args(annotation) if origin in (typing.Union, _union_type()) else ():
        if arg is not type(None):
            return _unwrap_dict(arg)
    return None


def _union_type() -> Any:
    import types

    return types.UnionType


def _string_members(schema: Schema) -> list[Schema]:
    if schema.type == OpenAPIType.STRING:
        return [schema]
    return [m for m in (schema.one_of or []) if isinstance(m, Schema) and m.type == OpenAPIType.STRING]


def _pydantic_pattern(field_schema: dict[str, Any]) -> str | None:
    if "pattern" in field_schema:
        return str(field_schema["pattern"])
    for member in field_schema.get("anyOf", []):
        if "pattern" in member:
            return str(member["pattern"])
    return None


def _dict_schema(annotation: Any, field_schema: dict[str, Any], schema_creator: SchemaCreator) -> Schema | None:
    types_ = _unwrap_dict(annotation)
    if types_ is None:
        return None
    _, value_type = types_
    value_schema = schema_creator.for_field_definition(FieldDefinition.from_annotation(value_type))
    object_schema = field_schema if field_schema.get("type") == "object" else {}
    for member in field_schema.get("anyOf", []):
        if member.get("type") == "object":
            object_schema = member
    # pydantic states constrained keys as patternProperties: only names matching the pattern are allowed.
    key_patterns = list(object_schema.get("patternProperties", {}))
    return Schema(
        type=OpenAPIType.OBJECT,
        pattern_properties={key_patterns[0]: value_schema} if len(key_patterns) == 1 else None,
        additional_properties=False if len(key_patterns) == 1 else value_schema,
        max_properties=object_schema.get("maxProperties"),
        description=field_schema.get("description"),
    )


class StrictPydanticSchemaPlugin(PydanticSchemaPlugin):
    @classmethod
    def for_pydantic_model(cls, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        schema = super().for_pydantic_model(field_definition, schema_creator)
        model = field_definition.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return schema
        if model.model_config.get("extra") == "forbid":
            schema.additional_properties = False
        try:
            field_schemas: dict[str, Any] = model.model_json_schema(mode="validation").get("properties", {})
        except Exception:  # a model pydantic cannot describe keeps the schema Litestar made
            return schema
        for name, info in model.model_fields.items():
            key = info.alias or name
            current = (schema.properties or {}).get(key)
            field_schema = field_schemas.get(key, {})
            if not isinstance(current, Schema) or not field_schema:
                continue
            replacement = _dict_schema(info.annotation, field_schema, schema_creator)
            if replacement is not None and not _describes_object(current):
                nullable = _is_optional(info.annotation)
                schema.properties[key] = (  # type: ignore[index]
                    Schema(one_of=[replacement, Schema(type=OpenAPIType.NULL)]) if nullable else replacement
                )
                continue
            pattern = _pydantic_pattern(field_schema)
            for member in _string_members(current):
                if pattern and not member.pattern:
                    member.pattern = pattern
        return schema


def _is_optional(annotation: Any) -> bool:
    if typing.get_origin(annotation) is typing.Annotated:
        return _is_optional(typing.get_args(annotation)[0])
    return type(None) in typing.get_args(annotation)


def _describes_object(schema: Schema) -> bool:
    if schema.type == OpenAPIType.OBJECT:
        return True
    return any(isinstance(m, Schema) and m.type == OpenAPIType.OBJECT for m in schema.one_of or [])
