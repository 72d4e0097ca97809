"""Guessing license keys and tokens at a high rate meets 429s long before a success is plausible, and the answers
for a malformed key and a well-formed unknown one are indistinguishable: same status, body, headers, code path.

The limiters run at the production defaults here (the shared fixtures raise them for other tests).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import secrets
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from litestar import Litestar
from pydantic import SecretStr
from sqlalchemy import event

from license_server.app import create_app
from license_server.config import Settings
from license_server.deployments.runtime_state import DistinctFailureLimiter, RateLimiter
from license_server.licenses.license_keys import ALPHABET, GROUP_LENGTH, GROUPS, KEY_PREFIX
from license_server.licenses.terms import LicenseTerms
from license_server.replicas.limits import FailureCounter, InProcessRequestLimit
from license_server.runtime import Runtime
from tests.adversarial.conftest import budget
from tests.conftest import LicenseFactory
from tests.deployments.conftest import activate, bearer

KEY_SPACE_BITS = GROUPS * GROUP_LENGTH * 5
DEFAULTS = Settings.model_fields


def default(name: str) -> int:
    value = DEFAULTS[name].default
    assert isinstance(value, int)
    return value


@pytest.fixture
def backend() -> str:
    return "sqlite"  # the limiters are in-process; the database plays no part


@pytest.fixture
def production_limits(runtime: Runtime) -> Runtime:
    state = runtime.poll_state
    state.address_limiter = InProcessRequestLimit(RateLimiter(default("rate_limit_per_address")))
    state.license_key_limiter = InProcessRequestLimit(RateLimiter(default("rate_limit_per_license_key")))
    failures = default("rate_limit_failed_auth_per_address")
    state.failed_auth_limiter = runtime.billing.failed_auth_limiter = FailureCounter(
        DistinctFailureLimiter(failures), limit=failures, fingerprint=runtime.hasher.fingerprint
    )
    return runtime


async def client_from(app: Litestar, address: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
async def attacker(app: Litestar, production_limits: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    async for http in client_from(app, "203.0.113.66"):
        yield http


@pytest.fixture
async def bystander(app: Litestar, production_limits: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    async for http in client_from(app, "198.51.100.7"):
        yield http


def random_key() -> str:
    body = "".join(secrets.choice(ALPHABET) for _ in range(GROUPS * GROUP_LENGTH))
    return "-".join([KEY_PREFIX, *(body[i : i + GROUP_LENGTH] for i in range(0, len(body), GROUP_LENGTH))])


def random_token() -> str:
    return "lsdt_" + secrets.token_urlsafe(32)


def first_refusal(statuses: list[int]) -> int:
    assert 429 in statuses, "never rate limited"
    index = statuses.index(429)
    assert set(statuses[index:]) == {429}, "a refused address got through again within the window"
    return index


def report(what: str, guesses: int, allowed: int, per_minute: int, space_bits: int) -> None:
    per_year = per_minute * 60 * 24 * 365
    print(
        f"\n{what}: {guesses} guesses, {allowed} answered, {guesses - allowed} refused with 429; at most "
        f"{per_minute}/min/address = {per_year:.2e}/year against 2^{space_bits} keys "
        f"(success chance per address-year < 2^-{space_bits - per_year.bit_length()})"
    )


@pytest.mark.parametrize("route", ["/v1/activations", "/v1/licenses/validate"])
async def test_guessing_license_keys_hits_429_long_before_success_is_plausible(
    attacker: httpx.AsyncClient, bystander: httpx.AsyncClient, route: str
) -> None:
    guesses = budget(150, 3000)
    statuses = []
    for _ in range(guesses):
        body: dict[str, Any] = {"license_key": random_key()}
        body.update({"fingerprint": "guess"} if route == "/v1/activations" else {"nonce": "n" * 16})
        response = await attacker.post(route, json=body)
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert int(response.headers["Retry-After"]) >= 1
    allowed = first_refusal(statuses)
    assert allowed <= default("rate_limit_per_address")
    assert all(s in {404, 200} for s in statuses[:allowed]), set(statuses[:allowed])  # 200: validate says valid=false
    report(f"license keys via {route}", guesses, allowed, default("rate_limit_per_address"), KEY_SPACE_BITS)
    # The limit is per address: someone else is not locked out by the attacker.
    other = await bystander.post(route, json={**body, "license_key": random_key()})
    assert other.status_code != 429


@pytest.mark.parametrize(("method", "route"), [("GET", "/v1/license"), ("POST", "/v1/usage")])
async def test_guessing_deployment_tokens_hits_429_and_then_even_a_right_token_waits(
    attacker: httpx.AsyncClient,
    bystander: httpx.AsyncClient,
    make_license: LicenseFactory,
    method: str,
    route: str,
) -> None:
    issued = await make_license()
    real_token = (await activate(bystander, issued)).json()["deployment_token"]
    usage = {"measured_at": "2026-06-01T00:00:00Z", "idempotency_key": "k", "workspaces": []}
    guesses = budget(80, 2000)
    statuses = []
    for _ in range(guesses):
        response = await attacker.request(method, route, headers=bearer(random_token()), json=usage)
        statuses.append(response.status_code)
    allowed = first_refusal(statuses)
    assert allowed == default("rate_limit_failed_auth_per_address")
    assert set(statuses[:allowed]) == {401}
    report(f"deployment tokens via {route}", guesses, allowed, allowed, 256)
    # A lucky guess would not even be looked at until the window clears...
    lucky = await attacker.request(method, route, headers=bearer(real_token), json=usage)
    assert lucky.status_code == 429
    # ...while the deployment that owns the token, from its own address, is unaffected.
    owner = await bystander.request(method, route, headers=bearer(real_token), json=usage)
    assert owner.status_code == 200, owner.text


async def test_guessing_the_metrics_token_hits_429(production_limits: Runtime) -> None:
    metrics_token = secrets.token_urlsafe(32)
    production_limits.settings.metrics_token = SecretStr(metrics_token)
    async for attacker in client_from(create_app(production_limits), "203.0.113.66"):
        statuses = [
            (await attacker.get("/metrics", headers=bearer(secrets.token_urlsafe(32)))).status_code
            for _ in range(budget(60, 1000))
        ]
        allowed = first_refusal(statuses)
        assert allowed == default("rate_limit_failed_auth_per_address")
        assert set(statuses[:allowed]) == {401}
        lucky = await attacker.get("/metrics", headers=bearer(metrics_token))
        assert lucky.status_code == 429  # not even looked at until the window clears
        assert metrics_token not in lucky.text
        # the address's other credentials have their own count
        assert (await attacker.get("/v1/admin/licenses", headers=bearer("lsat_x"))).status_code == 401


async def test_guessing_admin_tokens_hits_429(attacker: httpx.AsyncClient) -> None:
    statuses = [
        (await attacker.get("/v1/admin/licenses", headers=bearer("lsat_" + secrets.token_urlsafe(32)))).status_code
        for _ in range(budget(60, 1000))
    ]
    allowed = first_refusal(statuses)
    assert allowed == default("rate_limit_failed_auth_per_address")
    assert set(statuses[:allowed]) == {401}


@pytest.mark.parametrize(
    ("method", "route", "body"),
    [
        ("GET", "/inner/api/info", None),
        ("POST", "/inner/api/webapp/permission/batch", {"userId": "u", "appIds": ["a"]}),
    ],
)
async def test_guessing_inner_api_secrets_hits_429_and_then_even_a_right_secret_waits(
    attacker: httpx.AsyncClient,
    bystander: httpx.AsyncClient,
    owner_headers: dict[str, str],
    make_license: LicenseFactory,
    method: str,
    route: str,
    body: dict[str, Any] | None,
) -> None:
    issued = await make_license()
    created = await bystander.post(
        f"/v1/admin/licenses/{issued.view.license.id}/inner-api/credentials", json={}, headers=owner_headers
    )
    real_secret = created.json()["secret"]
    guesses = budget(80, 2000)
    statuses = []
    for _ in range(guesses):
        guess = {"Enterprise-Api-Secret-Key": "lsia_" + secrets.token_urlsafe(32)}
        statuses.append((await attacker.request(method, route, headers=guess, json=body)).status_code)
    allowed = first_refusal(statuses)
    assert allowed == default("rate_limit_failed_auth_per_address")
    assert set(statuses[:allowed]) == {401}
    report(f"inner-API secrets via {route}", guesses, allowed, allowed, 256)
    right = {"Enterprise-Api-Secret-Key": real_secret}
    assert (await attacker.request(method, route, headers=right, json=body)).status_code == 429
    owner = await bystander.request(method, route, headers=right, json=body)
    assert owner.status_code == 200, owner.text


# -- no self-lockout -----------------------------------------------------------------------------------------------
@dataclass
class Credentials:
    """A right credential of each kind, and how to present a credential of each kind on a route that needs it."""

    owner_token: str
    deployment_token: str
    inner_api_secret: str

    def right(self, kind: str) -> str:
        return {"admin": self.owner_token, "deployment": self.deployment_token, "inner-api": self.inner_api_secret}[
            kind
        ]


KINDS = ["admin", "deployment", "inner-api"]


def wrong(kind: str) -> str:
    return {"admin": "lsat_", "deployment": "lsdt_", "inner-api": "lsia_"}[kind] + secrets.token_urlsafe(32)


async def present(http: httpx.AsyncClient, kind: str, secret: str) -> int:
    """A read that needs a credential of ``kind``: the admin license list, a deployment poll, the inner API's info."""
    if kind == "admin":
        return (await http.get("/v1/admin/licenses", headers=bearer(secret))).status_code
    if kind == "deployment":
        return (await http.get("/v1/license", headers=bearer(secret))).status_code
    return (await http.get("/inner/api/info", headers={"Enterprise-Api-Secret-Key": secret})).status_code


@pytest.fixture
async def credentials(
    bystander: httpx.AsyncClient, owner_headers: dict[str, str], make_license: LicenseFactory
) -> Credentials:
    # Two seats: the deployment's activation and the Dify install the inner-API credential stands for.
    issued = await make_license(terms=LicenseTerms.model_validate({"max_activations": 2}))
    deployment_token = (await activate(bystander, issued)).json()["deployment_token"]
    created = await bystander.post(
        f"/v1/admin/licenses/{issued.view.license.id}/inner-api/credentials", json={}, headers=owner_headers
    )
    return Credentials(
        owner_headers["Authorization"].removeprefix("Bearer "), deployment_token, created.json()["secret"]
    )


@pytest.mark.parametrize("failing", KINDS)
async def test_guessing_one_kind_of_credential_never_blocks_a_right_credential_of_another_kind(
    attacker: httpx.AsyncClient, credentials: Credentials, failing: str
) -> None:
    """A Dify with a wrong secret behind the same NAT locked out the owner's admin token, every deployment poll and
    every inner-API call from that address: one limiter counted every kind of failure."""
    statuses = [await present(attacker, failing, wrong(failing)) for _ in range(40)]
    assert first_refusal(statuses) == default("rate_limit_failed_auth_per_address")
    assert await present(attacker, failing, credentials.right(failing)) == 429  # the guessed kind waits
    for other in (kind for kind in KINDS if kind != failing):
        assert await present(attacker, other, credentials.right(other)) == 200, other


@pytest.mark.parametrize("kind", KINDS)
async def test_a_client_retrying_one_wrong_secret_does_not_lock_out_its_address(
    attacker: httpx.AsyncClient, credentials: Credentials, kind: str
) -> None:
    """A misconfigured install repeats one wrong secret: that is no guessing, and its neighbours behind the same
    address (with right credentials of the same kind) must not wait for it."""
    stale = wrong(kind)
    statuses = [await present(attacker, kind, stale) for _ in range(3 * default("rate_limit_failed_auth_per_address"))]
    assert set(statuses) == {401}
    assert await present(attacker, kind, credentials.right(kind)) == 200


@pytest.fixture
def behind_proxy(runtime: Runtime) -> Litestar:
    """The app as deployed behind a reverse proxy at 10.0.0.2 (LICENSE_SERVER_TRUSTED_PROXIES=10.0.0.0/24)."""
    runtime.settings = runtime.settings.model_copy(update={"trusted_proxies": [ipaddress.ip_network("10.0.0.0/24")]})
    return create_app(runtime)


@pytest.fixture
async def proxy(behind_proxy: Litestar, production_limits: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    async for http in client_from(behind_proxy, "10.0.0.2"):
        yield http


def forwarded(client: str, spoofed: str | None = None) -> dict[str, str]:
    """What the proxy sends: it appends the address it saw to whatever the client sent."""
    return {"X-Forwarded-For": f"{spoofed}, {client}" if spoofed else client}


async def test_behind_a_trusted_proxy_each_client_it_names_is_limited_on_its_own(
    proxy: httpx.AsyncClient, make_license: LicenseFactory
) -> None:
    """All clients behind a proxy had one address, the proxy's: one guesser locked everyone out. And what a client
    writes into X-Forwarded-For itself (left of what the proxy appended) does not move it to another count."""
    issued = await make_license()
    right = await proxy.post("/v1/activations", json={"license_key": issued.key, "fingerprint": "f"})
    token = right.json()["deployment_token"]
    statuses = []
    for i in range(40):
        headers = {**bearer(random_token()), **forwarded("203.0.113.66", spoofed=f"192.0.2.{i}")}
        statuses.append((await proxy.get("/v1/license", headers=headers)).status_code)
    assert first_refusal(statuses) == default("rate_limit_failed_auth_per_address")
    assert (await proxy.get("/v1/license", headers={**bearer(token), **forwarded("203.0.113.66")})).status_code == 429
    bystander = await proxy.get("/v1/license", headers={**bearer(token), **forwarded("198.51.100.7")})
    assert bystander.status_code == 200
    # The same address rule for the activate/validate limits: a key guesser behind the proxy is stopped alone.
    guesses = [
        (
            await proxy.post(
                "/v1/licenses/validate",
                json={"license_key": random_key(), "nonce": "n" * 16},
                headers=forwarded("203.0.113.66", spoofed=f"192.0.2.{i}"),
            )
        ).status_code
        for i in range(default("rate_limit_per_address") + 5)
    ]
    assert 429 in guesses
    other = await proxy.post(
        "/v1/licenses/validate",
        json={"license_key": issued.key, "nonce": "n" * 16},
        headers=forwarded("198.51.100.7"),
    )
    assert other.status_code == 200


# -- indistinguishability -----------------------------------------------------------------------------------------
def comparable(response: httpx.Response) -> tuple[int, dict[str, str], Any]:
    """Status, headers and body, minus the per-request parts (the signed answer's timestamps, the request id)."""
    headers = {k: v for k, v in response.headers.items() if k not in {"date", "content-length", "x-request-id"}}
    body = response.json()
    if isinstance(body, dict):
        body.pop("request_id", None)
    if isinstance(body, dict) and "signed" in body:
        claims = json.loads(base64.urlsafe_b64decode(body["signed"].split(".")[1] + "=="))
        body = {**body, "signed": {k: v for k, v in claims.items() if k not in {"ts", "iat", "nbf", "exp"}}}
        body.pop("ts")
    return response.status_code, headers, body


class StatementLog:
    def __init__(self, runtime: Runtime) -> None:
        self.statements: list[str] = []
        event.listen(runtime.engine.sync_engine, "before_cursor_execute", self._record)

    def _record(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.statements.append(statement)

    def take(self) -> list[str]:
        taken, self.statements = self.statements, []
        return taken


# Empty and over-long keys are refused by the body schema (400) before any lookup: their length is public anyway.
MALFORMED_KEYS = ["not-a-key", "LSK-0000", "lsk-0000-iiii-oooo-uuuu-llll-0000-0000-0000", "' OR 1=1 --", "\u00e9" * 40]


@pytest.mark.parametrize("malformed", MALFORMED_KEYS)
@pytest.mark.parametrize("route", ["/v1/activations", "/v1/licenses/validate"])
async def test_malformed_and_unknown_license_keys_get_identical_answers_by_the_same_code_path(
    client: httpx.AsyncClient, runtime: Runtime, route: str, malformed: str
) -> None:
    extra = {"fingerprint": "f"} if route == "/v1/activations" else {"nonce": "n" * 16}
    log = StatementLog(runtime)
    unknown = await client.post(route, json={"license_key": random_key(), **extra})
    unknown_sql = log.take()
    wrong = await client.post(route, json={"license_key": malformed, **extra})
    wrong_sql = log.take()
    assert comparable(wrong) == comparable(unknown)
    assert wrong_sql == unknown_sql  # the same statements: no early exit that timing could reveal


@pytest.mark.parametrize("malformed", ["garbage", "lsat_" + "x" * 43, "Bearer", "lsdt_"])
async def test_malformed_and_unknown_deployment_tokens_get_identical_answers_by_the_same_code_path(
    client: httpx.AsyncClient, runtime: Runtime, malformed: str
) -> None:
    log = StatementLog(runtime)
    unknown = await client.get("/v1/license", headers=bearer(random_token()))
    unknown_sql = log.take()
    wrong = await client.get("/v1/license", headers=bearer(malformed))
    wrong_sql = log.take()
    assert comparable(wrong) == comparable(unknown)
    assert wrong_sql == unknown_sql


async def test_timing_of_malformed_and_unknown_keys_is_comparable(client: httpx.AsyncClient) -> None:
    """Measured, not asserted against a wall-clock bound: interleaved runs, medians and spreads are printed, and the
    medians must lie within each other's interquartile ranges widened by the measurement's own spread."""
    samples: dict[str, list[float]] = {"malformed": [], "unknown": []}
    for _ in range(budget(150, 2000)):
        for kind in ("malformed", "unknown"):
            key = "not-a-key" if kind == "malformed" else random_key()
            start = time.perf_counter()
            await client.post("/v1/activations", json={"license_key": key, "fingerprint": "f"})
            samples[kind].append(time.perf_counter() - start)
    quartiles = {kind: statistics.quantiles(values, n=4) for kind, values in samples.items()}
    medians = {kind: q[1] for kind, q in quartiles.items()}
    print(
        "\nactivation with a malformed vs an unknown key (ms): "
        + ", ".join(
            f"{k} median {m * 1000:.3f} IQR {(q[2] - q[0]) * 1000:.3f}"
            for (k, q), m in zip(quartiles.items(), medians.values(), strict=True)
        )
    )
    spread = max(q[2] - q[0] for q in quartiles.values())
    assert abs(medians["malformed"] - medians["unknown"]) <= 2 * spread + 0.1 * max(medians.values())
