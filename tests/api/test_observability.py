"""Metrics, request ids and structured logs, readiness on failing jobs, and the offline API docs.

The metrics registry is process-global (one app per process in production; many here), so every check reads how a
sample moved while the test drove traffic, never its absolute value.
"""

from __future__ import annotations

import io
import json
import logging
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from license_server.config import Settings
from license_server.licenses.service import IssuedLicense
from license_server.logs import configure_logging
from license_server.runtime import Runtime
from license_server.scheduler import build_scheduler
from license_server.scheduling import ScheduledJob
from tests.conftest import LicenseFactory, make_settings
from tests.deployments.conftest import activate, bearer

METRICS_TOKEN = "metrics-token-for-tests-0123456789"


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
def settings(tmp_path: Path, keys_dir: Path, request: pytest.FixtureRequest) -> Settings:
    """Poll caching on (so the cache counts hits and misses), /metrics behind a token, one log line per request."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copy(request.getfixturevalue("sqlite_template"), data_dir / "license-server.db")
    return make_settings(data_dir, keys_dir, None, poll_cache_seconds=5, metrics_token=METRICS_TOKEN, access_log=True)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics", headers=bearer(METRICS_TOKEN))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The process's one logging setup, forced to JSON lines, written to a buffer the test reads."""
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    try:
        yield stream
    finally:
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        root.setLevel(logging.WARNING)


async def test_metrics_are_off_the_public_listener_without_a_token(runtime: Runtime) -> None:
    from license_server.app import create_app

    runtime.settings.metrics_token = None  # the default: no token configured
    transport = httpx.ASGITransport(app=create_app(runtime))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/metrics", headers=bearer(METRICS_TOKEN))
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


async def test_metrics_need_the_metrics_token(client: httpx.AsyncClient, owner_headers: dict[str, str]) -> None:
    assert (await client.get("/metrics")).status_code == 401
    assert (await client.get("/metrics", headers=bearer("wrong-token-of-some-length"))).status_code == 401
    # an admin token is not the metrics token
    assert (await client.get("/metrics", headers=owner_headers)).status_code == 401
    assert (await client.get("/metrics", headers=bearer(METRICS_TOKEN))).status_code == 200


async def test_metrics_parse_and_move_with_traffic(
    client: httpx.AsyncClient, make_license: LicenseFactory, owner_headers: dict[str, str]
) -> None:
    issued: IssuedLicense = await make_license()
    activated = await activate(client, issued)
    assert activated.status_code == 201, activated.text
    token = activated.json()["deployment_token"]
    before = await scrape(client)

    for _ in range(3):
        assert (await client.get("/v1/license", headers=bearer(token))).status_code == 200
    listed = await client.get(f"/v1/admin/licenses/{issued.view.license.id}", headers=owner_headers)
    assert listed.status_code == 200
    assert (await client.get("/no/such/path")).status_code == 404
    assert (await client.get("/v1/admin/licenses", headers=bearer("not-a-token-at-all"))).status_code == 401
    after = await scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "license_server_http_requests_total"
    assert moved(requests, app="vendor", method="GET", route="/v1/license", status="200") == 3
    # the route template, never the raw path (bounded label values)
    template = "/v1/admin/licenses/{license_id}"
    assert moved(requests, app="vendor", method="GET", route=template, status="200") == 1
    assert moved(requests, app="vendor", method="GET", route="<unmatched>", status="404") == 1
    assert moved(requests, app="vendor", method="GET", route="/v1/admin/licenses", status="401") == 1
    latency = "license_server_http_request_duration_seconds_count"
    assert moved(latency, app="vendor", method="GET", route="/v1/license") == 3
    assert (
        moved("license_server_http_request_duration_seconds_sum", app="vendor", method="GET", route="/v1/license") > 0
    )
    # the poll path reads activations from its cache: the first poll after activation may miss, the rest hit
    hits = moved("license_server_cache_lookups_total", cache="poll.activations", result="hit")
    misses = moved("license_server_cache_lookups_total", cache="poll.activations", result="miss")
    assert hits + misses >= 3
    assert hits >= 2
    # SQLite's pool is exported (its counts are whatever the pool class keeps)
    assert ("license_server_db_pool_connections", (("state", "checked_out"),)) in after


async def test_request_id_is_echoed_in_the_header_the_problem_body_and_every_log_line(
    client: httpx.AsyncClient, json_log: io.StringIO
) -> None:
    adopted = await client.get("/v1/admin/licenses", headers={"X-Request-Id": "caller-chosen.id:42"})
    assert adopted.status_code == 401
    assert adopted.headers["x-request-id"] == "caller-chosen.id:42"
    assert adopted.json()["request_id"] == "caller-chosen.id:42"

    refused = await client.get("/health/live", headers={"X-Request-Id": 'has spaces and "quotes"'})
    made = refused.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made), made
    other = await client.get("/health/live")
    assert other.headers["x-request-id"] not in {made, ""}

    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]  # every line is one JSON object
    access = [line for line in lines if line["logger"] == "license_server.access"]
    assert {line["request_id"] for line in access} >= {"caller-chosen.id:42", made}
    for line in access:
        assert {"ts", "level", "message", "method", "route", "status", "duration_ms"} <= set(line)
    assert any(line["route"] == "/v1/admin/licenses" and line["status"] == 401 for line in access)


async def test_readiness_turns_unready_after_repeated_job_failures_and_names_the_job(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    assert (await client.get("/health/ready")).json()["checks"]["jobs"] == "ok"

    async def broken(_: Runtime) -> None:
        raise RuntimeError("the database went away")

    async def fine(_: Runtime) -> None:
        return None

    scheduler = build_scheduler(runtime, shared=False, per_process=False)
    failing = scheduler._guarded(ScheduledJob("test.broken", broken, lambda _: 60.0))
    for _ in range(runtime.settings.job_failures_unready - 1):
        await failing()  # type: ignore[operator]
    assert (await client.get("/health/ready")).status_code == 200, "unready before the threshold"
    await failing()  # type: ignore[operator]
    answer = await client.get("/health/ready")
    assert answer.status_code == 503
    assert "test.broken" in answer.json()["checks"]["jobs"]
    assert "RuntimeError" in answer.json()["checks"]["jobs"]
    # a good run of the same job clears it
    await scheduler._guarded(ScheduledJob("test.broken", fine, lambda _: 60.0))()  # type: ignore[operator]
    assert (await client.get("/health/ready")).status_code == 200


_ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


@pytest.mark.parametrize("page", ["/schema", "/schema/swagger"])
async def test_docs_page_loads_every_asset_from_this_server(client: httpx.AsyncClient, page: str) -> None:
    html = await client.get(page)
    assert html.status_code == 200
    assert "text/html" in html.headers["content-type"]
    assets = _ASSET.findall(html.text)
    assert len(assets) >= 3, assets  # the bundle, the preset and the stylesheet at least
    for url in assets:
        assert url.startswith("/"), f"{url} is not on this server"
        assert not url.startswith("//"), f"{url} is another host"
        fetched = await client.get(url)
        assert fetched.status_code == 200, url
        assert len(fetched.content) > 100, url
    assert "cdn" not in html.text.lower()
    assert "unpkg" not in html.text.lower()


async def test_openapi_documents_credentials_errors_and_media_types(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    schemes = schema["components"]["securitySchemes"]
    assert {"adminToken", "deploymentToken", "innerApiSecret", "platformSecret"} <= set(schemes)
    assert schemes["innerApiSecret"]["name"] == "Enterprise-Api-Secret-Key"
    paths = schema["paths"]
    assert paths["/v1/admin/licenses"]["get"]["security"] == [{"adminToken": []}]
    assert paths["/v1/license"]["get"]["security"] == [{"deploymentToken": []}]
    assert "security" not in paths["/health/live"]["get"]
    inner = next(op for path, item in paths.items() if path.startswith("/inner/api") for op in item.values())
    assert inner["security"] == [{"innerApiSecret": []}]
    assert "429" in inner["responses"]
    created = paths["/v1/admin/licenses"]["post"]["responses"]
    assert {"400", "401", "403", "404", "409", "413", "415", "429"} <= set(created)
    assert "Retry-After" in created["429"]["headers"]
    # real examples: the problem codes this server writes, not generated placeholders
    example = created["413"]["content"]["application/problem+json"]["examples"]
    (only,) = example.values()
    assert only["value"]["code"] == "request_too_large"
    assert only["value"]["status"] == 413
    assert created["400"]["content"]["application/problem+json"]["examples"]
    # and no generated placeholders elsewhere (Litestar fills additional responses with random values by default)
    unready = paths["/health/ready"]["get"]["responses"]["503"]["content"]["application/json"]
    assert "examples" not in unready
    revocations = paths["/.well-known/license-key-revocations.jws"]["get"]["responses"]["200"]["content"]
    assert list(revocations) == ["application/jwt"]


def test_a_misspelt_setting_refuses_with_the_closest_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from license_server.errors import UnknownSetting

    monkeypatch.setenv("LICENSE_SERVER_DATABSE_URL", "postgresql+asyncpg://db/prod")
    with pytest.raises(UnknownSetting) as refused:
        Settings()
    assert refused.value.closest == "LICENSE_SERVER_DATABASE_URL"
    assert "did you mean LICENSE_SERVER_DATABASE_URL" in refused.value.detail


def test_the_test_suites_switches_are_not_settings_and_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LICENSE_SERVER_REQUIRE_POSTGRES", "1")
    monkeypatch.setenv("LICENSE_SERVER_REQUIRE_BROWSER", "1")
    monkeypatch.setenv("LICENSE_SERVER_EDGE_TOKEN", "edge-token-0123456789")
    assert Settings().edge_token is not None
