"""The OpenAPI schema says what the validators enforce.

Litestar builds component schemas from pydantic models field by field and drops what it does not map: the
``extra="forbid"`` of every request body (``additionalProperties: false``), string ``pattern`` constraints, and the
shape of ``dict`` fields with constrained keys (rendered as arrays). This plugin takes those three facts from
pydantic's own JSON schema of the model, so clients and fuzzers are told exactly what the server accepts.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from litestar import Litestar, Router
from litestar._openapi.schema_generation import SchemaCreator
from litestar.datastructures import CacheControlHeader
from litestar.openapi.plugins import OpenAPIRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import (
    Example,
    OpenAPIHeader,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
    Schema,
    SecurityScheme,
)
from litestar.plugins.pydantic import PydanticSchemaPlugin
from litestar.static_files import create_static_files_router
from litestar.typing import FieldDefinition
from pydantic import BaseModel

from license_server.schemas_common import Problem


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


# -- the documentation pages, offline ---------------------------------------------------------------------------------
API_DOCS_ASSETS = Path(__file__).parent / "api_docs"
API_DOCS_ASSETS_PATH = "/schema/static"
SWAGGER_UI_VERSION = "5.35.0"  # license_server/api_docs/README.md says where the files come from


def offline_render_plugins() -> list[OpenAPIRenderPlugin]:
    """Swagger UI at /schema and /schema/swagger, its JavaScript, CSS and icon served by this server (never a CDN):
    the docs work in an air-gapped network."""
    assets = f"{API_DOCS_ASSETS_PATH}/swagger-ui"
    return [
        SwaggerRenderPlugin(
            version=SWAGGER_UI_VERSION,
            js_url=f"{assets}/swagger-ui-bundle.js",
            css_url=f"{assets}/swagger-ui.css",
            standalone_preset_js_url=f"{assets}/swagger-ui-standalone-preset.js",
            favicon=f"<link rel='icon' type='image/png' href='{assets}/favicon-32x32.png'>",
            path=["/", "/swagger"],
        )
    ]


def api_docs_assets_router() -> Router:
    return create_static_files_router(
        path=API_DOCS_ASSETS_PATH,
        directories=[API_DOCS_ASSETS],
        include_in_schema=False,
        # The files change only with a release; a browser may keep them a day.
        cache_control=CacheControlHeader(max_age=86400, public=True),
    )


# -- what every operation documents: its credentials, and a real example of each problem it can answer -------------
# code and detail of a typical problem per status, as this server writes them (errors.py, http_wiring.py).
_PROBLEM_EXAMPLES: dict[int, tuple[str, str, list[dict[str, str]]]] = {
    400: (
        "validation_error",
        "expires_at: must be after starts_at",
        [{"field": "expires_at", "message": "must be after starts_at"}],
    ),
    401: ("authentication_required", "send Authorization: Bearer <token>", []),
    402: ("credits_exhausted", "The account has not enough credits and flex billing is off", []),
    403: ("permission_denied", "The token's role does not allow this", []),
    404: ("not_found", "No such resource", []),
    409: ("conflict", "Conflicts with the resource's current state", []),
    413: ("request_too_large", "Request Entity Too Large", []),
    415: (
        "unsupported_media_type",
        "send the body as JSON with Content-Type: application/json",
        [{"field": "content-type", "message": "send the body as JSON with Content-Type: application/json"}],
    ),
    429: ("rate_limited", "too many failed authentications; retry after 42 s", []),
    503: ("keyring_unavailable", "Signing keys are unavailable", []),
}
EXAMPLE_REQUEST_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SECURITY_SCHEMES: dict[str, SecurityScheme | Reference] = {
    "adminToken": SecurityScheme(
        type="http", scheme="bearer", description="An admin token (`license-server tokens create`), per role"
    ),
    "deploymentToken": SecurityScheme(
        type="http", scheme="bearer", description="The deployment token an activation returned (`token`)"
    ),
    "innerApiSecret": SecurityScheme(
        type="apiKey",
        name="Enterprise-Api-Secret-Key",
        security_scheme_in="header",
        description="An inner-API secret, issued by an admin (the `/inner/api` contract)",
    ),
    "platformSecret": SecurityScheme(
        type="http", scheme="bearer", description="A hosted platform's API secret, shown once at its creation"
    ),
    "metricsToken": SecurityScheme(type="http", scheme="bearer", description="LICENSE_SERVER_METRICS_TOKEN"),
}


def problem_example(status: int, description: str) -> dict[str, Any]:
    code, detail, errors = _PROBLEM_EXAMPLES.get(status, ("bad_request", description, []))
    return {
        "type": "about:blank",
        "title": detail,
        "status": status,
        "detail": detail,
        "code": code,
        "errors": errors,
        "message": detail,
        "request_id": EXAMPLE_REQUEST_ID,
    }


def document_problem_examples(app: Litestar) -> None:
    """Every problem response gets a real example of its status; no response gets a generated placeholder (random
    values of the right type, which Litestar makes for additional responses unless told not to)."""
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            responses = dict(handler.responses or {})
            for status, spec in responses.items():
                if spec.data_container is Problem and spec.examples is None:
                    example = Example(summary=spec.description, value=problem_example(status, spec.description))
                    responses[status] = replace(spec, generate_examples=False, examples=[example])
                elif spec.generate_examples:
                    responses[status] = replace(spec, generate_examples=False)
            handler.responses = responses


_RETRY_AFTER = OpenAPIHeader(
    schema=Schema(type=OpenAPIType.INTEGER, minimum=1),
    description="Seconds until a request from this address may succeed again",
    required=True,
)


@dataclass
class DocumentedOperation(Operation):
    """Litestar's operation, with the ``Retry-After`` header every 429 of this server sends."""

    def __post_init__(self) -> None:
        for status, response in (self.responses or {}).items():
            if status == "429" and isinstance(response, OpenAPIResponse):
                response.headers = {**(response.headers or {}), "Retry-After": _RETRY_AFTER}
