"""The body rules of tests/adversarial/test_content_types.py hold on the edge too, and on ``/inner/api`` of both apps.

One hook (``license_server/json_bodies.py``) serves the vendor and the edge app, so a non-JSON body is a 415 and a
deep one a 4xx before any parser runs, whichever app answers.
"""

from __future__ import annotations

import json
import logging
import uuid

import pytest

from tests.inner_api.conftest import SECRET_HEADER, EdgeTarget, Target

NOT_JSON_TYPES = [None, "text/plain", "application/x-www-form-urlencoded"]
DEEP_BRACKETS = "[" * 100_000


@pytest.fixture(params=["vendor", "edge"])
def target(request: pytest.FixtureRequest) -> Target:
    chosen: Target = request.getfixturevalue(f"{request.param}_target")
    return chosen


def typed(headers: dict[str, str], content_type: str | None) -> dict[str, str]:
    return {**headers, "content-type": content_type} if content_type else dict(headers)


@pytest.mark.parametrize("content_type", NOT_JSON_TYPES)
async def test_a_non_json_body_changes_no_access_mode(target: Target, content_type: str | None) -> None:
    licensed = await target.license()
    dify = {SECRET_HEADER: licensed.secret}
    response = await target.client.post(
        "/inner/api/webapp/access-mode",
        content='{"appId": "app-1", "accessMode": "public"}',
        headers=typed(dify, content_type),
    )
    assert (response.status_code, response.json()["code"]) == (415, "unsupported_media_type"), response.text
    assert response.json()["message"]  # Dify reads `message`
    mode = await target.client.get("/inner/api/webapp/access-mode/id", params={"appId": "app-1"}, headers=dify)
    assert mode.json() == {"accessMode": "private"}


@pytest.mark.parametrize("content_type", [*NOT_JSON_TYPES, "application/json"])
async def test_100000_open_brackets_get_a_4xx_and_no_traceback(
    target: Target, caplog: pytest.LogCaptureFixture, content_type: str | None
) -> None:
    licensed = await target.license()
    with caplog.at_level(logging.DEBUG):
        response = await target.client.post(
            "/inner/api/webapp/permission/batch",
            content=DEEP_BRACKETS,
            headers=typed({SECRET_HEADER: licensed.secret}, content_type),
        )
    expected = (400, "validation_error") if content_type == "application/json" else (415, "unsupported_media_type")
    assert (response.status_code, response.json()["code"]) == expected, response.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], caplog.text


@pytest.mark.parametrize("content_type", NOT_JSON_TYPES)
async def test_the_edge_records_no_usage_sent_as_another_type(
    edge_target: EdgeTarget, content_type: str | None
) -> None:
    await edge_target.license()
    report = {
        "measured_at": edge_target.clock().isoformat(),
        "workspaces": [{"id": "ws-1", "members": 3}],
        "seats_used": 3,
        "idempotency_key": uuid.uuid4().hex,
    }
    refused = await edge_target.client.post("/v1/usage", content=json.dumps(report), headers=typed({}, content_type))
    assert (refused.status_code, refused.json()["code"]) == (415, "unsupported_media_type"), refused.text
    deep = await edge_target.client.post("/v1/usage", content=DEEP_BRACKETS, headers=typed({}, content_type))
    assert deep.status_code == 415
    accepted = await edge_target.client.post("/v1/usage", json=report)
    assert (accepted.status_code, accepted.json()["duplicate"]) == (200, False), accepted.text  # not recorded before


async def test_the_edge_refuses_duplicate_keys_and_deep_nesting_in_json_bodies(edge_target: EdgeTarget) -> None:
    await edge_target.license()
    json_type = {"content-type": "application/json"}
    duplicate = await edge_target.client.post(
        "/v1/usage", content='{"seats_used": 1, "seats_used": 2}', headers=json_type
    )
    assert (duplicate.status_code, duplicate.json()["errors"][0]["field"]) == (400, "seats_used")
    deep = await edge_target.client.post("/v1/usage", content='{"a": ' * 40 + "1" + "}" * 40, headers=json_type)
    assert (deep.status_code, deep.json()["errors"][0]["field"]) == (400, "body")


async def test_the_edge_schema_declares_415_where_a_body_is_taken(edge_target: EdgeTarget) -> None:
    await edge_target.license()
    paths = (await edge_target.client.get("/schema/openapi.json")).json()["paths"]
    assert "415" in paths["/v1/usage"]["post"]["responses"]
    assert "415" in paths["/inner/api/webapp/access-mode"]["post"]["responses"]
    assert "415" not in paths["/v1/license"]["get"]["responses"]
