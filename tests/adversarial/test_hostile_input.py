"""Hostile input to the admin API (the deployment API has its own in tests/deployments/test_hostile_input.py).

Each hostile body gets a clean 4xx problem naming the field and leaves every table exactly as it was; values that are
legitimately storable (SQL and HTML metacharacters) are stored verbatim and come back verbatim, as JSON strings.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from license_server.all_models import Base
from license_server.runtime import Runtime

NASTY = "Robert'); DROP TABLE licenses;-- <script>alert(1)</script> \" \\ %s %(x)s ${x} {{x}} \u202e\u0000"
# NUL is not storable in PostgreSQL text; everything else must round-trip exactly.
STORABLE_NASTY = NASTY.replace("\u0000", "")


async def table_counts(runtime: Runtime) -> dict[str, int]:
    async with runtime.session_factory() as db:
        return {
            table.name: int(await db.scalar(select(func.count()).select_from(table)) or 0)
            for table in Base.metadata.sorted_tables
        }


async def make_customer(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    response = await client.post("/v1/admin/customers/", json={"name": "Hostile Corp"}, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def nested(depth: int) -> str:
    return '{"a": ' * depth + '"leaf"' + "}" * depth


# route, a valid body to start from (customer id filled in), the field to poison
ADMIN_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("/v1/admin/customers/", {"name": "X"}, "name"),
    ("/v1/admin/plans/", {"code": "p1", "name": "P"}, "name"),
    ("/v1/admin/licenses/", {"customer_id": "CUSTOMER", "expires_at": "2030-01-01"}, "notes"),
    ("/v1/admin/tokens/", {"name": "t", "role": "viewer"}, "name"),
    ("/v1/admin/webhooks/", {"url": "https://example.com/hook"}, "description"),
]


def fill(body: dict[str, Any], customer_id: str) -> dict[str, Any]:
    return {k: (customer_id if v == "CUSTOMER" else v) for k, v in body.items()}


# Raw JSON text for the poisoned field (some of these cannot even be produced by json.dumps).
HOSTILE_VARIANTS: dict[str, str] = {
    "huge integer": str(10**40),
    "float for a string": "1e308",
    "deeply nested object": nested(200),
    "very deeply nested object": nested(5000),
    "array of arrays": "[" * 50 + "]" * 50,
    "NUL byte": '"a\\u0000b"',
    "lone surrogate": '"\\ud800"',
}


BOTH_BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture
def backend() -> str:
    """Validation happens before storage, so once on SQLite is enough; tests where storage differs (NUL,
    metacharacters) parametrize ``backend`` over both databases themselves."""
    return "sqlite"


@pytest.mark.parametrize(("route", "body", "field"), ADMIN_BODIES)
@pytest.mark.parametrize("variant", list(HOSTILE_VARIANTS))
async def test_hostile_values_in_admin_bodies_get_400_and_store_nothing(
    client: httpx.AsyncClient,
    owner_headers: dict[str, str],
    runtime: Runtime,
    route: str,
    body: dict[str, Any],
    field: str,
    variant: str,
) -> None:
    customer_id = await make_customer(client, owner_headers)
    before = await table_counts(runtime)
    content = json.dumps(fill(body, customer_id))[:-1] + f', "{field}": {HOSTILE_VARIANTS[variant]}' + "}"
    if field in body:  # replace, not duplicate, the field
        content = json.dumps({k: v for k, v in fill(body, customer_id).items() if k != field})[:-1]
        content += f', "{field}": {HOSTILE_VARIANTS[variant]}' + "}"
    response = await client.post(route, content=content, headers={**owner_headers, "content-type": "application/json"})
    assert response.status_code == 400, (variant, response.status_code, response.text)
    problem = response.json()
    assert problem["code"] == "validation_error"
    assert problem["errors"], problem
    assert await table_counts(runtime) == before


@pytest.mark.parametrize("backend", BOTH_BACKENDS)
@pytest.mark.parametrize(("route", "body", "field"), ADMIN_BODIES)
async def test_nul_characters_are_refused_before_storage_on_both_databases(
    client: httpx.AsyncClient,
    owner_headers: dict[str, str],
    runtime: Runtime,
    route: str,
    body: dict[str, Any],
    field: str,
) -> None:
    customer_id = await make_customer(client, owner_headers)
    before = await table_counts(runtime)
    poisoned = {**fill(body, customer_id), field: "a\u0000b", "metadata": {"k\u0000": "v"}}
    if route != "/v1/admin/licenses/":
        poisoned.pop("metadata")
    response = await client.post(route, json=poisoned, headers=owner_headers)
    assert response.status_code == 400, response.text
    assert {e["field"] for e in response.json()["errors"]} >= {field}
    assert await table_counts(runtime) == before


@pytest.mark.parametrize(("route", "body", "field"), ADMIN_BODIES)
async def test_unknown_keys_with_nul_characters_get_a_400_that_quotes_them(
    client: httpx.AsyncClient,
    owner_headers: dict[str, str],
    runtime: Runtime,
    route: str,
    body: dict[str, Any],
    field: str,
) -> None:
    customer_id = await make_customer(client, owner_headers)
    before = await table_counts(runtime)
    response = await client.post(route, json={**fill(body, customer_id), "a\u0000b": 1}, headers=owner_headers)
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["field"] == "a\u0000b"
    assert await table_counts(runtime) == before


@pytest.mark.parametrize("query", ["after_id=" + "9" * 30, "after_id=-1", "limit=0", "limit=" + "9" * 30, "offset=-5"])
async def test_out_of_range_numbers_in_query_strings_get_400(
    client: httpx.AsyncClient, owner_headers: dict[str, str], query: str
) -> None:
    response = await client.get(f"/v1/admin/events?{query}", headers=owner_headers)
    assert response.status_code == 400, (query, response.text)


@pytest.mark.parametrize("since", ["0.0", "1700000000", "2026-01-01T00:00:00", "0001-01-01T00:00:00+01:00", "x" * 65])
async def test_audit_time_filters_follow_the_body_rules_for_timestamps(
    client: httpx.AsyncClient, owner_headers: dict[str, str], since: str
) -> None:
    response = await client.get("/v1/admin/audit-events", params={"since": since}, headers=owner_headers)
    assert response.status_code == 400, (since, response.text)
    assert response.json()["errors"][0]["field"] == "since"
    fine = await client.get("/v1/admin/audit-events", params={"since": "2026-01-01"}, headers=owner_headers)
    assert fine.status_code == 200, fine.text


@pytest.mark.parametrize(("route", "body", "field"), ADMIN_BODIES)
async def test_duplicated_json_keys_are_refused_naming_the_key(
    client: httpx.AsyncClient,
    owner_headers: dict[str, str],
    runtime: Runtime,
    route: str,
    body: dict[str, Any],
    field: str,
) -> None:
    customer_id = await make_customer(client, owner_headers)
    before = await table_counts(runtime)
    valid = json.dumps(fill(body, customer_id))
    # the same field twice: the first value fine, the second one too, so only the duplication is wrong
    content = valid[:-1] + f', "{field}": "second"' + "}"
    if field not in fill(body, customer_id):
        content = valid[:-1] + f', "{field}": "first", "{field}": "second"' + "}"
    response = await client.post(route, content=content, headers={**owner_headers, "content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["field"] == field
    assert await table_counts(runtime) == before


@pytest.mark.parametrize(("route", "body", "field"), ADMIN_BODIES)
async def test_oversized_admin_bodies_get_413_and_store_nothing(
    client: httpx.AsyncClient,
    owner_headers: dict[str, str],
    runtime: Runtime,
    route: str,
    body: dict[str, Any],
    field: str,
) -> None:
    customer_id = await make_customer(client, owner_headers)
    before = await table_counts(runtime)
    content = json.dumps({**fill(body, customer_id), field: "x" * (2 * 1024 * 1024)})
    response = await client.post(route, content=content, headers={**owner_headers, "content-type": "application/json"})
    assert (response.status_code, response.json()["code"]) == (413, "request_too_large")
    assert await table_counts(runtime) == before


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b"[]", b"null", b'"x"', b'{"name": "\xff\xfe"}', b"{'name': 'single quotes'}", b'{"name": NaN}'],
)
async def test_undecodable_admin_bodies_get_400(
    client: httpx.AsyncClient, owner_headers: dict[str, str], runtime: Runtime, content: bytes
) -> None:
    before = await table_counts(runtime)
    response = await client.post(
        "/v1/admin/customers/", content=content, headers={**owner_headers, "content-type": "application/json"}
    )
    assert response.status_code == 400, (content, response.text)
    assert response.json()["code"] == "validation_error"
    assert await table_counts(runtime) == before


@pytest.mark.parametrize(
    "expires_at",
    [
        "0001-01-01",
        "1970-01-01T00:00:00Z",
        "9999-12-31",
        "+275760-09-13T00:00:00Z",
        "2030-01-01T00:00:00",
        "2030-13-45",
        "0001-01-01T00:00:00+01:00",  # before the first representable instant once converted to UTC
        2_000_000_000,  # a Unix time: not what the schema offers, and a typo away from any date
        "2000000000",
        1e300,
    ],
)
async def test_dates_far_in_the_past_or_future_naive_or_numeric_are_refused(
    client: httpx.AsyncClient, owner_headers: dict[str, str], runtime: Runtime, expires_at: object
) -> None:
    customer_id = await make_customer(client, owner_headers)
    before = await table_counts(runtime)
    response = await client.post(
        "/v1/admin/licenses/", json={"customer_id": customer_id, "expires_at": expires_at}, headers=owner_headers
    )
    assert response.status_code == 400, (expires_at, response.text)
    assert response.json()["errors"][0]["field"] == "expires_at"
    assert await table_counts(runtime) == before


@pytest.mark.parametrize(
    "terms",
    [
        {"max_activations": 10**40},
        {"workspaces": {"enabled": True, "limit": 2**63}},
        {"notice_days": -1},
        {"entitlements": {"x": 2**70}},
        {"entitlements": {"DROP TABLE": True}},
        {"login": {"email_code": 1}},  # strict booleans stay strict through the framework's decoding
        {"workspace_policy": {"allow_member_invite": "true"}},
    ],
)
async def test_huge_negative_or_type_confused_values_in_terms_are_refused(
    client: httpx.AsyncClient, owner_headers: dict[str, str], runtime: Runtime, terms: dict[str, Any]
) -> None:
    customer_id = await make_customer(client, owner_headers)
    before = await table_counts(runtime)
    body = {"customer_id": customer_id, "expires_at": "2030-01-01", "terms": terms}
    response = await client.post("/v1/admin/licenses/", json=body, headers=owner_headers)
    assert response.status_code == 400, (terms, response.text)
    assert response.json()["errors"][0]["field"].startswith("terms")
    assert await table_counts(runtime) == before


@pytest.mark.parametrize("backend", BOTH_BACKENDS)
async def test_metacharacters_in_every_string_field_are_stored_and_returned_verbatim(
    client: httpx.AsyncClient, owner_headers: dict[str, str]
) -> None:
    text = STORABLE_NASTY
    customer = await client.post(
        "/v1/admin/customers/", json={"name": text, "external_id": text}, headers=owner_headers
    )
    assert customer.status_code == 201, customer.text
    fetched = (await client.get(f"/v1/admin/customers/{customer.json()['id']}", headers=owner_headers)).json()
    assert (fetched["name"], fetched["external_id"]) == (text, text)
    plan = await client.post(
        "/v1/admin/plans/", json={"code": "meta", "name": text, "description": text}, headers=owner_headers
    )
    assert plan.status_code == 201, plan.text
    assert (plan.json()["name"], plan.json()["description"]) == (text, text)
    issued = await client.post(
        "/v1/admin/licenses/",
        json={
            "customer_id": customer.json()["id"],
            "expires_at": "2030-01-01",
            "plan": "meta",
            "notes": text,
            "metadata": {text: text},
            "terms": {"branding": {"application_title": text[:200]}},
        },
        headers=owner_headers,
    )
    assert issued.status_code == 201, issued.text
    license_id = issued.json()["id"]
    got = (await client.get(f"/v1/admin/licenses/{license_id}", headers=owner_headers)).json()
    assert (got["notes"], got["metadata"], got["customer_name"]) == (text, {text: text}, text)
    assert got["terms"]["branding"]["application_title"] == text[:200]
    suspended = await client.post(
        f"/v1/admin/licenses/{license_id}/actions/suspend", json={"reason": text}, headers=owner_headers
    )
    assert suspended.status_code == 200, suspended.text
    token = await client.post("/v1/admin/tokens/", json={"name": text, "role": "viewer"}, headers=owner_headers)
    assert (token.status_code, token.json()["name"]) == (201, text)
    hook = await client.post(
        "/v1/admin/webhooks/", json={"url": "https://example.com/h", "description": text}, headers=owner_headers
    )
    assert (hook.status_code, hook.json()["description"]) == (201, text)
    # Filters with metacharacters find nothing instead of matching everything or failing.
    search = await client.get("/v1/admin/plans/' OR '1'='1", headers=owner_headers)
    assert search.status_code == 404, search.text
    # The response is JSON: the markup travels as an escaped string, never as markup in an HTML content type.
    assert issued.headers["content-type"].startswith("application/json")
