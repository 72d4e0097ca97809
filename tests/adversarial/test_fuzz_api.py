"""Schemathesis against the OpenAPI schema the server itself serves: no 5xx, every response as declared.

The operations come from the live schema, so routes added later (offline, inner API, ...) are fuzzed without
touching this file. Admin routes get the owner token, deployment routes a real deployment token; about half the
generated path parameters are swapped for ids of real rows, so handlers run past their 404s.

Every case with a body is also sent as ``text/plain``, with no Content-Type and as a form: the server parses bodies
as JSON whatever the type says, so a rule keyed on the type could be skipped by naming another one. Those answers
must be 4xx problems (415): never a 2xx, which would have written, never a 5xx.

Every schemathesis check runs but one: "schema-valid data is accepted". The checks include status-code,
content-type and response-schema conformance of every answer, and, since the schema declares each route's
credentials, that a route refuses a request without them or with invalid ones. Some rules cannot be said in JSON Schema
(a renewal must move expiry later; a timestamp within 1970-02..8999; SSO needs a protocol when enforced); those
answers are 400 problems naming the field, which the response-conformance checks still verify.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from schemathesis import Case, GenerationMode
from schemathesis.checks import positive_data_acceptance
from schemathesis.core import NotSet, media_types

from tests.adversarial.conftest import SOAK, Seeded, budget, log_of

pytestmark = pytest.mark.slow

# Deployment routes authenticate with the deployment token; everything else under /v1/admin with the owner token.
DEPLOYMENT_TOKEN_ROUTES = {("GET", "/v1/license"), ("POST", "/v1/usage"), ("DELETE", "/v1/activations/{activation_id}")}
# The same bytes as the JSON case, labelled otherwise (None: no Content-Type header at all).
OTHER_CONTENT_TYPES = {"text/plain": "text/plain", "none": None, "form": "application/x-www-form-urlencoded"}


# RFC 7519: application/jwt is the compact serialization (three base64url parts), not JSON; schemathesis files it
# under JSON, which would fail every signed-document response. Our own deserializer below reads it as the string
# the schema declares.
media_types.JSON_MEDIA_TYPES = media_types.JSON_MEDIA_TYPES - {("application", "jwt")}


@schemathesis.deserializer("application/jwt")
def _compact_jws(_: Any, response: Any) -> str:
    """Signed documents are JWS compact serializations: a string, which is what the schema declares."""
    text: str = response.content.decode("ascii")
    return text


def _operations(url: str) -> list[Any]:
    loaded = schemathesis.openapi.from_url(f"{url}/schema/openapi.json")
    return [result.ok() for result in loaded.get_all_operations()]  # type: ignore[union-attr]  # Err raises


def _real_ids(seeded: Seeded) -> dict[str, str]:
    return {
        "customer_id": seeded.customer_id,
        "plan_ref": seeded.plan_code,
        "license_id": seeded.license_id,
        "activation_id": seeded.activation_id,
        "platform_id": seeded.platform_id,
        "external_id": seeded.billing_external_id,
    }


def _calling(run: Callable[[Case[Any]], None]) -> Callable[[Case[Any]], None]:
    def test(case: Case[Any]) -> None:
        run(case)

    return test


def _well_formed(name: str, value: object) -> bool:
    if name == "plan_ref":
        return isinstance(value, str) and 0 < len(value) <= 64
    if name == "external_id":
        return isinstance(value, str) and 0 < len(value) <= 200
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _prepare(case: Case[Any], seeded: Seeded) -> None:
    path_parameters = case.path_parameters or {}
    # A deterministic half of the cases (by their own content) address real rows instead of random ids.
    digest = hashlib.sha256(repr(sorted(path_parameters.items())).encode()).digest()
    if path_parameters and digest[0] % 2 == 0:
        for name, value in _real_ids(seeded).items():
            # only well-formed ids are swapped: a malformed one is the point of a negative case
            if name in path_parameters and _well_formed(name, path_parameters[name]):
                path_parameters[name] = value
    headers = case.headers
    route = (case.method.upper(), case.path)
    if route in DEPLOYMENT_TOKEN_ROUTES:
        headers["Authorization"] = f"Bearer {seeded.deployment_token}"
    elif case.path.startswith("/v1/admin"):
        headers["Authorization"] = f"Bearer {seeded.owner_token}"
    elif case.path.startswith("/inner/api"):
        headers["Enterprise-Api-Secret-Key"] = seeded.inner_api_secret
    elif case.path.startswith("/v1/billing"):
        headers["Authorization"] = f"Bearer {seeded.platform_secret}"
    elif case.path.startswith("/inner/billing"):
        headers["Billing-Api-Secret-Key"] = seeded.platform_secret
    else:
        return
    # The schema declares each route's credentials (securitySchemes); the ones set here are real, not generated, so
    # schemathesis' authentication check probes the route without them and with invalid ones, and expects 401/403.
    case._has_explicit_auth = True


def _send_as(case: Case[Any], content_type: str | None, base_url: str) -> httpx.Response:
    """The case's request with its JSON body's bytes, under another Content-Type (or none)."""
    request = case.as_transport_kwargs(base_url=base_url)
    body = request.pop("data", None)
    if "json" in request:
        body = json.dumps(request.pop("json")).encode()
    headers = {k: v for k, v in request["headers"].items() if k.lower() != "content-type"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return httpx.request(
        request["method"], request["url"], params=request["params"], headers=headers, content=body, timeout=30
    )


def _problem_of(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def test_every_operation_answers_as_declared_and_never_5xx(seeded_server: Seeded) -> None:
    """Schema-conforming and schema-violating inputs alike: the response is declared, typed, and not a 5xx."""
    operations = _operations(seeded_server.server.url)
    assert len(operations) >= 30, "the served schema lost operations"
    cases: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    retyped: Counter[str] = Counter()  # cases sent again under another Content-Type, by type
    failures: dict[str, str] = {}
    settings = hypothesis.settings(
        max_examples=budget(15, 500),
        deadline=None,
        derandomize=not SOAK,  # make test replays the same bounded cases; soak explores
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        database=None,
    )
    for operation in operations:
        label = f"{operation.method.upper()} {operation.path}"
        strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(GenerationMode.NEGATIVE)

        def run(case: Case[Any], label: str = label) -> None:
            _prepare(case, seeded_server)
            response = case.call(timeout=30)
            cases[label] += 1
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                log = log_of(seeded_server.server)
                traceback = log[log.rfind("unhandled error") :][:4000]
                raise AssertionError(f"{case.formatted_path} -> {response.status_code}\n{case.body!r}\n{traceback}")
            case.validate_response(response, excluded_checks=[positive_data_acceptance])
            if isinstance(case.body, NotSet):
                return
            for name, content_type in OTHER_CONTENT_TYPES.items():
                answer = _send_as(case, content_type, seeded_server.server.url)
                retyped[name] += 1
                statuses[answer.status_code] += 1
                if not 400 <= answer.status_code < 500 or "code" not in _problem_of(answer):
                    log = log_of(seeded_server.server)
                    traceback = log[log.rfind("unhandled error") :][:4000] if answer.status_code >= 500 else ""
                    raise AssertionError(
                        f"{case.formatted_path} as {name} -> {answer.status_code}\n{answer.text[:500]}\n"
                        f"{case.body!r}\n{traceback}"
                    )

        fuzz = settings(hypothesis.given(case=strategy)(_calling(run)))

        try:
            fuzz()
        except (AssertionError, BaseExceptionGroup) as exc:  # collect every operation's failures, report them all
            failures[label] = f"{exc.__class__.__name__}: {exc}"[:3000]
    print(
        f"\nschemathesis: {sum(cases.values())} cases over {len(cases)} operations, bodies sent again as "
        f"{dict(retyped)}; statuses {dict(sorted(statuses.items()))}"
    )
    assert not failures, "\n\n".join(f"== {label}\n{failure}" for label, failure in failures.items())
