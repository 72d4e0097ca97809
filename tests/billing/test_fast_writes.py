"""Reserve and commit served in front of Litestar (billing/fast_writes.py) answer exactly as the Litestar routes do:
the same request padded past the fast path's size bound is Litestar's, and the two answers are compared."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from license_server.auth.tokens import Actor
from license_server.billing import fast_writes
from license_server.billing.fast_bodies import MAX_FAST_BODY_BYTES
from license_server.billing.fast_writes import COMMIT_BODY, RESERVE_BODY
from license_server.runtime import Runtime
from tests.billing.conftest import Platform, PlatformFactory, subscribe, tiny_plan

RUNS = "app_invocation.max_monthly_count"


@pytest.fixture
async def platform(make_platform: PlatformFactory, runtime: Runtime, actor: Actor) -> Platform:
    made = await make_platform(catalogues=(tiny_plan("p", {RUNS: {"kind": "monthly", "limit": 4}}),))
    await subscribe(runtime, actor, made, "org-1", "p")
    return made


async def _post(client: httpx.AsyncClient, platform: Platform, tail: str, body: Any, *, litestar: bool) -> Any:
    raw = json.dumps(body).encode() + (b" " * (MAX_FAST_BODY_BYTES + 1) if litestar else b"")
    headers = {**platform.headers, "Content-Type": "application/json"}
    return await client.post(platform.url("org-1", tail), headers=headers, content=raw)


def _same(fast: httpx.Response, slow: httpx.Response, *, ignore: tuple[str, ...] = ()) -> None:
    assert fast.status_code == slow.status_code
    drop = {"x-request-id", "content-length"}
    assert {k: v for k, v in fast.headers.items() if k not in drop} == {
        k: v for k, v in slow.headers.items() if k not in drop
    }

    def scrub(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: scrub(v) for k, v in value.items() if k not in ignore}
        return value

    assert scrub(fast.json()) == scrub(slow.json())


async def test_reserve_commit_and_their_refusals_answer_as_litestar_does(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    ids = ("reservation_id", "request_id", "expires_at", "history_id", "request_id")
    fast = await _post(client, platform, "usage/reserve", {"key": RUNS, "amount": 2, "request_id": "a"}, litestar=False)
    slow = await _post(client, platform, "usage/reserve", {"key": RUNS, "amount": 1, "request_id": "b"}, litestar=True)
    assert fast.status_code == 201
    _same(fast, slow, ignore=(*ids, "amount", "used", "remaining"))
    # The replay answers the first result on either path.
    for litestar in (False, True):
        again = await _post(
            client, platform, "usage/reserve", {"key": RUNS, "amount": 2, "request_id": "a"}, litestar=litestar
        )
        assert again.json()["data"]["reservation_id"] == fast.json()["data"]["reservation_id"]
    # A refusal (limit 4: 3 held) is the same problem, and writes nothing.
    refused = [
        await _post(client, platform, "usage/reserve", {"key": RUNS, "amount": 2, "request_id": f"c{n}"}, litestar=n)
        for n in (False, True)
    ]
    assert refused[0].status_code == 403
    _same(*refused, ignore=("request_id",))
    commits = [
        await _post(client, platform, f"usage/reservations/{rid}/commit", {"actual": 1}, litestar=litestar)
        for rid, litestar in (("a", False), ("b", True))
    ]
    _same(*commits, ignore=(*ids, "refunded"))
    missing = [
        await _post(client, platform, "usage/reservations/nope/commit", {"actual": 1}, litestar=litestar)
        for litestar in (False, True)
    ]
    assert missing[0].status_code == 404
    _same(*missing, ignore=("request_id",))


async def test_consume_and_its_refusal_answer_as_litestar_does(client: httpx.AsyncClient, platform: Platform) -> None:
    answers = [
        await _post(client, platform, "usage/consume", {"key": RUNS, "idempotency_key": f"k{int(n)}"}, litestar=n)
        for n in (False, True)
    ]
    assert answers[0].status_code == 201
    _same(*answers, ignore=("history_id", "used", "remaining"))
    replay = await _post(client, platform, "usage/consume", {"key": RUNS, "idempotency_key": "k0"}, litestar=False)
    assert replay.json() == answers[0].json()
    conflict = [
        await _post(
            client, platform, "usage/consume", {"key": RUNS, "amount": 2, "idempotency_key": "k0"}, litestar=litestar
        )
        for litestar in (False, True)
    ]
    assert conflict[0].status_code == 409
    _same(*conflict, ignore=("request_id",))
    refused = [
        await _post(
            client, platform, "usage/consume", {"key": RUNS, "amount": 3, "idempotency_key": f"r{n}"}, litestar=n
        )
        for n in (False, True)
    ]
    assert refused[0].status_code == 403
    _same(*refused, ignore=("request_id",))


async def test_a_bad_secret_is_the_guard_s_401(client: httpx.AsyncClient, platform: Platform) -> None:
    answers = []
    for litestar in (False, True):
        raw = json.dumps({"actual": 1}).encode() + (b" " * 5000 if litestar else b"")
        answers.append(
            await client.post(
                platform.url("org-1", "usage/reservations/a/commit"),
                headers={"Authorization": "Bearer nope", "Content-Type": "application/json"},
                content=raw,
            )
        )
    assert answers[0].status_code == 401
    _same(*answers, ignore=("request_id",))


async def test_the_limits_report_and_check_answer_as_litestar_does(
    client: httpx.AsyncClient, platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    served_here: list[str] = []
    reads = tuple(
        (pattern, template, _counting(read, template, served_here)) for pattern, template, read in fast_writes._READS
    )
    monkeypatch.setattr(fast_writes, "_READS", reads)
    consumed = await _post(client, platform, "usage/consume", {"key": RUNS, "idempotency_key": "k"}, litestar=False)
    assert consumed.status_code == 201

    async def both(tail: str, query: str = "", headers: dict[str, str] | None = None) -> list[httpx.Response]:
        # an unknown query parameter sends the same call to the Litestar route, which ignores it
        url = platform.url("org-1", tail)
        extra = "&" if query else "?"
        return [
            await client.get(f"{url}{query}", headers=headers or platform.headers),
            await client.get(f"{url}{query}{extra}via=litestar", headers=headers or platform.headers),
        ]

    for tail, query in (("limits", ""), (f"limits/{RUNS}/check", ""), (f"limits/{RUNS}/check", "?amount=3")):
        fast, slow = await both(tail, query)
        assert fast.status_code == 200, fast.text
        _same(fast, slow)
    assert (await both(f"limits/{RUNS}/check", "?amount=4"))[0].json()["data"]["allowed"] is False
    for tail, query, status in (
        ("limits", "", 401),  # a bad secret
        (f"limits/{RUNS}/check", "", 401),
        ("limits/Not-A-Key/check", "", 400),  # the key's rule, after the guard
    ):
        headers = {"Authorization": "Bearer nope"} if status == 401 else None
        fast, slow = await both(tail, query, headers)
        assert fast.status_code == status, fast.text
        _same(fast, slow, ignore=("request_id",))
    # served here, up to the read (a refused secret stops before it): the report once, the check four times
    assert served_here.count(fast_writes.LIMITS_TEMPLATE) == 1
    assert served_here.count(fast_writes.CHECK_TEMPLATE) == 4
    # what the route judges stays the route's: a sign, a huge number, an empty value, another parameter
    refused_by_the_route = [("?amount=-1", 400), ("?amount=99999999999999999999", 400), ("?amount=", 400)]
    for query, status in [*refused_by_the_route, ("?amount=1&amount=2", 200)]:  # Litestar takes the first
        before = len(served_here)
        answer = await client.get(platform.url("org-1", f"limits/{RUNS}/check{query}"), headers=platform.headers)
        assert answer.status_code == status, (query, answer.text)
        assert len(served_here) == before, query


def _counting(read: Any, template: str, served: list[str]) -> Any:
    async def counted(*args: Any) -> Any:
        served.append(template)
        return await read(*args)

    return counted


@pytest.mark.parametrize(
    "body",
    [
        b'{"actual": true}',
        b'{"actual": 1.0}',
        b'{"actual": -1}',
        b'{"actual": 1, "actual": 2}',
        b'{"actual": 1, "extra": 1}',
        b'{"actual": "1"}',
        b"{}",
        b'{"actual": 1}\n',
        b'\xef\xbb\xbf{"actual": 1}',
        '{"actual": 1}'.encode("utf-16"),
        b'{"actual": 1, "x": "\xff"}',
        b'{"actual": NaN}',
        b'{"actual": 1e0}',
    ],
)
def test_the_fast_reader_accepts_no_body_the_model_refuses(body: bytes) -> None:
    expected = None if body != b'{"actual": 1}\n' else {"actual": 1}
    assert COMMIT_BODY.read(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        b'{"key": "Runs", "request_id": "a"}',
        b'{"key": "runs\\n", "request_id": "a"}',
        b'{"key": "runs", "request_id": "a b"}',
        b'{"key": "runs", "request_id": "a\\u0000"}',
        b'{"key": "runs", "request_id": ""}',
        b'{"key": "runs", "request_id": "a", "ttl_seconds": 0}',
        b'{"key": "runs", "request_id": "a", "amount": 0}',
        b'{"key": "runs", "request_id": "a", "amount": {"n": 1}}',
        b'{"key": "runs"}',
        b'{"key": "runs", "request_id": "' + b"x" * 201 + b'"}',
    ],
)
def test_the_fast_reader_refuses_what_the_reserve_model_refuses(body: bytes) -> None:
    assert RESERVE_BODY.read(body) is None


def test_the_fast_reader_fills_in_the_defaults() -> None:
    assert RESERVE_BODY.read(b'{"key": "runs", "request_id": "a"}') == {
        "key": "runs",
        "amount": 1,
        "request_id": "a",
        "ttl_seconds": 900,
    }
