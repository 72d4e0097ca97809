"""The OpenAPI schema is served and complete: every operation has typed responses and its error responses."""

from __future__ import annotations

from typing import Any

import httpx
import pytest


@pytest.fixture
def backend() -> str:
    return "sqlite"


async def openapi(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    schema: dict[str, Any] = response.json()
    return schema


async def test_every_operation_documents_success_and_problem_responses(client: httpx.AsyncClient) -> None:
    schema = await openapi(client)
    operations = [
        (path, method, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in {"get", "post", "patch", "put", "delete"}
    ]
    assert len(operations) >= 25
    for path, method, operation in operations:
        responses = operation["responses"]
        successes = [code for code in responses if code.startswith("2")]
        assert successes, (method, path)
        for code in successes:
            assert responses[code].get("content"), (method, path, code)
        problem = responses["400"]["content"]["application/problem+json"]["schema"]
        assert problem == {"$ref": "#/components/schemas/Problem"}, (method, path)
        if path.startswith("/v1/admin"):
            assert {"401", "403"} <= set(responses), (method, path)
            assert operation.get("summary"), (method, path)


async def test_request_bodies_are_typed(client: httpx.AsyncClient) -> None:
    schema = await openapi(client)
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            body = operation.get("requestBody") if isinstance(operation, dict) else None
            if body:
                content = body["content"]["application/json"]["schema"]
                assert "$ref" in content or "oneOf" in content or "anyOf" in content, (method, path)


async def test_problem_schema_has_code_and_field_errors(client: httpx.AsyncClient) -> None:
    problem = (await openapi(client))["components"]["schemas"]["Problem"]
    assert {"code", "status", "detail", "errors"} <= set(problem["properties"])
