"""A body gets the same rules whatever its Content-Type says: JSON or 415, depth bounded before any parser recurses.

Litestar decodes a handler's body as JSON whatever the Content-Type, so a check keyed on the type could be skipped
by naming another one: ``text/plain`` once made an owner token out of ``{"role": "viewer", ..., "role": "owner"}``
and turned 100,000 ``[`` into an unauthenticated 500 with a RecursionError traceback per request.
(The edge and the inner API: tests/inner_api/test_body_rules.py.)
"""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from license_server.runtime import Runtime
from tests.adversarial.conftest import Seeded, log_of
from tests.adversarial.test_hostile_input import make_customer, nested, table_counts

OWNER_TOKEN_BY_DUPLICATE = '{"role": "viewer", "name": "d", "role": "owner"}'
NOT_JSON_TYPES = {
    "text/plain": "text/plain",
    "no content type": None,
    "form": "application/x-www-form-urlencoded",
    "multipart": "multipart/form-data; boundary=x",
    "JSON in another charset": "application/json; charset=latin-1",
    "text/json": "text/json",
}
DEEP_BRACKETS = "[" * 100_000


def with_type(headers: dict[str, str], content_type: str | None) -> dict[str, str]:
    return {**headers, "content-type": content_type} if content_type else dict(headers)


async def post_raw(
    client: httpx.AsyncClient, path: str, content: str | bytes, content_type: str | None, headers: dict[str, str]
) -> httpx.Response:
    # httpx adds no Content-Type for raw content, so "no content type" really sends none.
    return await client.post(path, content=content, headers=with_type(headers, content_type))


@pytest.mark.parametrize("content_type", list(NOT_JSON_TYPES.values()), ids=list(NOT_JSON_TYPES))
async def test_a_duplicated_role_sent_as_another_type_makes_no_owner_token(
    client: httpx.AsyncClient, owner_headers: dict[str, str], runtime: Runtime, content_type: str | None
) -> None:
    """Both databases (the ``backend`` fixture): the refusal comes before any transaction, so nothing is written."""
    before = await table_counts(runtime)
    response = await post_raw(client, "/v1/admin/tokens", OWNER_TOKEN_BY_DUPLICATE, content_type, owner_headers)
    assert (response.status_code, response.json()["code"]) == (415, "unsupported_media_type"), response.text
    assert response.json()["errors"][0]["field"] == "content-type"
    assert await table_counts(runtime) == before


@pytest.mark.parametrize("content_type", list(NOT_JSON_TYPES.values()), ids=list(NOT_JSON_TYPES))
async def test_a_valid_admin_body_sent_as_another_type_is_refused_and_stores_nothing(
    client: httpx.AsyncClient, owner_headers: dict[str, str], runtime: Runtime, content_type: str | None
) -> None:
    before = await table_counts(runtime)
    response = await post_raw(client, "/v1/admin/customers/", '{"name": "Typed Corp"}', content_type, owner_headers)
    assert (response.status_code, response.json()["code"]) == (415, "unsupported_media_type"), response.text
    assert await table_counts(runtime) == before


@pytest.mark.parametrize("content_type", ["text/plain", None, "application/json"])
async def test_nesting_past_32_is_refused_whatever_the_type(
    client: httpx.AsyncClient, owner_headers: dict[str, str], runtime: Runtime, content_type: str | None
) -> None:
    customer_id = await make_customer(client, owner_headers)
    before = await table_counts(runtime)
    body = json.dumps({"customer_id": customer_id, "expires_at": "2030-01-01"})[:-1]
    body += f', "metadata": {{"deep": {nested(40)}}}' + "}"
    response = await post_raw(client, "/v1/admin/licenses/", body, content_type, owner_headers)
    assert 400 <= response.status_code < 500, response.text
    if content_type == "application/json":
        assert response.json()["errors"][0] == {
            "field": "body",
            "message": "the body is nested more than 32 levels deep",
        }
    assert await table_counts(runtime) == before


@pytest.mark.parametrize("content_type", ["text/plain", None, "application/x-www-form-urlencoded", "application/json"])
@pytest.mark.parametrize("route", ["/v1/activations", "/v1/licenses/validate"])
async def test_100000_open_brackets_unauthenticated_get_a_4xx_and_no_traceback(
    client: httpx.AsyncClient, runtime: Runtime, caplog: pytest.LogCaptureFixture, route: str, content_type: str | None
) -> None:
    before = await table_counts(runtime)
    with caplog.at_level(logging.DEBUG):
        response = await post_raw(client, route, DEEP_BRACKETS, content_type, {})
    assert 400 <= response.status_code < 500, response.text
    expected = (400, "validation_error") if content_type == "application/json" else (415, "unsupported_media_type")
    assert (response.status_code, response.json()["code"]) == expected
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], caplog.text
    assert await table_counts(runtime) == before


async def test_deep_brackets_inside_strings_do_not_count_and_escaped_quotes_do_not_end_them(
    client: httpx.AsyncClient, owner_headers: dict[str, str]
) -> None:
    name = '[[[[{{{{"\\' * 20  # JSON-encoded: brackets, quotes and backslashes inside one string
    response = await client.post("/v1/admin/customers/", json={"name": name[:200]}, headers=owner_headers)
    assert response.status_code == 201, response.text
    assert response.json()["name"] == name[:200]


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=UTF-8", "Application/JSON", "application/x+json"]
)
async def test_json_types_with_utf8_or_no_charset_are_accepted(
    client: httpx.AsyncClient, owner_headers: dict[str, str], content_type: str
) -> None:
    response = await post_raw(client, "/v1/admin/customers/", '{"name": "Typed Corp"}', content_type, owner_headers)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("content_type", [None, "text/plain"])
async def test_an_empty_body_needs_no_content_type_where_the_body_is_optional(
    client: httpx.AsyncClient, owner_headers: dict[str, str], runtime: Runtime, content_type: str | None
) -> None:
    """``curl -X POST .../actions/suspend`` with no body still works: there is nothing to parse."""
    customer_id = await make_customer(client, owner_headers)
    issued = await client.post(
        "/v1/admin/licenses/", json={"customer_id": customer_id, "expires_at": "2030-01-01"}, headers=owner_headers
    )
    license_id = issued.json()["id"]
    response = await post_raw(
        client, f"/v1/admin/licenses/{license_id}/actions/suspend", b"", content_type, owner_headers
    )
    assert (response.status_code, response.json()["status_reason"]) == (200, "SUSPENDED"), response.text


async def test_an_unauthenticated_non_json_body_gets_401_before_its_type_is_judged(client: httpx.AsyncClient) -> None:
    response = await post_raw(client, "/v1/admin/tokens", OWNER_TOKEN_BY_DUPLICATE, "text/plain", {})
    assert response.status_code == 401


async def test_the_schema_declares_415_on_every_operation_with_a_body_and_only_there(
    client: httpx.AsyncClient,
) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    with_body = without_body = 0
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            declared = "415" in operation["responses"]
            assert declared == ("requestBody" in operation), (method, path)
            with_body += declared
            without_body += not declared
    assert with_body >= 20
    assert without_body >= 10


@pytest.mark.slow
def test_a_real_server_answers_deep_bodies_of_every_type_with_a_4xx_and_logs_no_traceback(
    seeded_server: Seeded,
) -> None:
    """The reported reproduction, against ``serve`` at DEBUG: unauthenticated, 100,000 ``[``, each content type."""
    logged_before = len(log_of(seeded_server.server))
    with httpx.Client(base_url=seeded_server.server.url, timeout=30) as http:
        for content_type in ["text/plain", None, "application/x-www-form-urlencoded", "application/json"]:
            for _ in range(3):  # "a traceback per request": several requests, none logs one
                answer = http.post("/v1/activations", content=DEEP_BRACKETS, headers=with_type({}, content_type))
                assert 400 <= answer.status_code < 500, (content_type, answer.status_code, answer.text)
    logged = log_of(seeded_server.server)[logged_before:]
    assert "Traceback" not in logged
    assert "RecursionError" not in logged
    assert "unhandled error" not in logged
