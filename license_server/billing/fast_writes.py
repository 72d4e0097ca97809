"""The platform API's hottest calls (reserve, commit, consume; the limits report and check) answered without
Litestar's per-request machinery.

``POST …/usage/reserve``, ``POST …/usage/reservations/{request_id}/commit`` and ``POST …/usage/consume`` (all
answered 201 by their Litestar routes), ``GET …/limits`` and ``GET …/limits/{key}/check[?amount=N]`` (200) stay
Litestar routes (the OpenAPI
schema, and the answer to anything unusual), but a well-formed call is served here, in front of Litestar's routing,
inside the request-id and metrics wrapper (``http_wiring.observe_requests``), which labels it with the route's
template as Litestar would. Per call Litestar spends more than the write itself costs: the guard and dependency
machinery, ``enforce_json_bodies``' scan, the signature model, the pydantic body model and the response conversion.

What is served here is exactly what the route would do with it, in the same order: the guard's authentication
(``accounts.authenticate_platform``, failures counted the same), the account's snapshot, the same service call, the
same ``{"data": ...}`` body and status. Whatever this path is not sure about — a body that is not a small flat JSON
object every rule accepts (``fast_bodies.py``), a Content-Type other than JSON, a second Authorization header,
trusted proxies (which change the address failures count against) — goes to Litestar untouched, the body already
read handed back to it, before anything was done: so every refusal of a bad request is Litestar's own, codes and
``errors[].field`` included. Errors from authentication on are raised by the same code the route runs and answered
through the one error mapping (``http_wiring.send_problem``).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Litestar
from litestar.enums import ScopeType
from litestar.serialization import encode_json
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send

from license_server.billing.accounts import service as accounts
from license_server.billing.accounts.snapshots import AccountSnapshot
from license_server.billing.controllers import BILLING_STATE_KEY, PLATFORM_PREFIX, checked_external_id, checked_key
from license_server.billing.fast_bodies import MAX_FAST_BODY_BYTES, Field, FlatBody
from license_server.billing.plans.terms import MAX_QUANTITY
from license_server.billing.schemas import MAX_TTL_SECONDS
from license_server.billing.state import BillingState
from license_server.billing.usage import service as usage
from license_server.http_wiring import send_problem
from license_server.json_bodies import is_json_media_type

_ACCOUNT = PLATFORM_PREFIX + "/accounts/{external_id}"
RESERVE_TEMPLATE = _ACCOUNT + "/usage/reserve"
COMMIT_TEMPLATE = _ACCOUNT + "/usage/reservations/{request_id}/commit"
CONSUME_TEMPLATE = _ACCOUNT + "/usage/consume"
LIMITS_TEMPLATE = _ACCOUNT + "/limits"
CHECK_TEMPLATE = _ACCOUNT + "/limits/{key}/check"
_LIMITS_PATH = re.compile(re.escape(PLATFORM_PREFIX) + r"/accounts/([^/]+)/limits")
_CHECK_PATH = re.compile(re.escape(PLATFORM_PREFIX) + r"/accounts/([^/]+)/limits/([^/]+)/check")
# check's one query parameter as a platform sends it; anything else (another parameter, a sign, a huge number) is
# the route's to judge
_CHECK_QUERY = re.compile(rb"(?:amount=(\d{1,16}))?")
_RESERVE_PATH = re.compile(re.escape(PLATFORM_PREFIX) + r"/accounts/([^/]+)/usage/reserve")
_CONSUME_PATH = re.compile(re.escape(PLATFORM_PREFIX) + r"/accounts/([^/]+)/usage/consume")
_COMMIT_PATH = re.compile(re.escape(PLATFORM_PREFIX) + r"/accounts/([^/]+)/usage/reservations/([^/]+)/commit")
_PRINTABLE = re.compile(r"[\x21-\x7e]{1,200}")  # IdempotencyKey
_QUOTA_KEY = re.compile(r"[a-z][a-z0-9_.:-]{0,99}")  # QuotaKey
RESERVE_BODY = FlatBody(
    (
        Field("key", pattern=_QUOTA_KEY),
        Field("amount", low=1, high=MAX_QUANTITY, default=1),
        Field("request_id", pattern=_PRINTABLE),
        Field("ttl_seconds", low=1, high=MAX_TTL_SECONDS, default=900),
    )
)
COMMIT_BODY = FlatBody((Field("actual", low=0, high=MAX_QUANTITY),))
CONSUME_BODY = FlatBody(
    (
        Field("key", pattern=_QUOTA_KEY),
        Field("amount", low=1, high=MAX_QUANTITY, default=1),
        Field("idempotency_key", pattern=_PRINTABLE),
    )
)
_JSON_HEADERS = (b"content-type", b"application/json")
_Call = Callable[[BillingState, AccountSnapshot, dict[str, Any], tuple[str, ...]], Awaitable[dict[str, Any]]]


async def _reserve(
    state: BillingState, snapshot: AccountSnapshot, body: dict[str, Any], params: tuple[str, ...]
) -> dict[str, Any]:
    return await usage.reserve(
        state,
        snapshot,
        key=body["key"],
        amount=body["amount"],
        request_id=body["request_id"],
        ttl_seconds=body["ttl_seconds"],
    )


async def _commit(
    state: BillingState, snapshot: AccountSnapshot, body: dict[str, Any], params: tuple[str, ...]
) -> dict[str, Any]:
    return await usage.commit(state, snapshot, request_id=params[1][:200], actual=body["actual"])


async def _consume(
    state: BillingState, snapshot: AccountSnapshot, body: dict[str, Any], params: tuple[str, ...]
) -> dict[str, Any]:
    return await usage.consume(
        state, snapshot, key=body["key"], amount=body["amount"], idempotency_key=body["idempotency_key"]
    )


_ROUTES: tuple[tuple[re.Pattern[str], str, FlatBody, _Call], ...] = (
    (_RESERVE_PATH, RESERVE_TEMPLATE, RESERVE_BODY, _reserve),
    (_COMMIT_PATH, COMMIT_TEMPLATE, COMMIT_BODY, _commit),
    (_CONSUME_PATH, CONSUME_TEMPLATE, CONSUME_BODY, _consume),
)


async def _read_limits(state: BillingState, snapshot: AccountSnapshot, params: tuple[str, ...], amount: int) -> bytes:
    return (await usage.cached_limits_report(state, snapshot)).body


async def _read_check(state: BillingState, snapshot: AccountSnapshot, params: tuple[str, ...], amount: int) -> bytes:
    data = await usage.check(state, snapshot, key=checked_key(params[1]), amount=amount)
    return encode_json({"data": data})


_Read = Callable[[BillingState, AccountSnapshot, tuple[str, ...], int], Awaitable[bytes]]
_READS: tuple[tuple[re.Pattern[str], str, _Read], ...] = (
    (_LIMITS_PATH, LIMITS_TEMPLATE, _read_limits),
    (_CHECK_PATH, CHECK_TEMPLATE, _read_check),
)


def _replaying(messages: list[ReceiveMessage], receive: Receive) -> Receive:
    """``receive`` that first hands back what was already read."""
    pending = list(messages)

    async def replay() -> ReceiveMessage:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


def fast_platform_writes(app: Litestar, inner: ASGIApp, *, enabled: bool = True) -> ASGIApp:
    """``inner`` (Litestar's ASGI handler) with reserve, commit and consume served in front of it."""
    templates = {route.path_format for route in app.routes}
    missing = {RESERVE_TEMPLATE, COMMIT_TEMPLATE, CONSUME_TEMPLATE, LIMITS_TEMPLATE, CHECK_TEMPLATE} - templates
    if missing:  # the fast path must name routes Litestar has, for the metrics and the fallback
        raise RuntimeError(f"fast billing writes: no Litestar route {sorted(missing)}")
    if not enabled:
        return inner

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or not scope["path"].startswith(PLATFORM_PREFIX) or scope.get("root_path"):
            await inner(scope, receive, send)  # every other route (the poll path among them) pays this test only
            return
        path, method = scope["path"], scope["method"]
        if method == "POST":
            for pattern, template, shape, call in _ROUTES:
                match = pattern.fullmatch(path)
                if match is not None:
                    await _serve(scope, receive, send, match.groups(), template, shape, call)
                    return
        elif method == "GET":
            for pattern, template, read in _READS:
                match = pattern.fullmatch(path)
                if match is not None:
                    await _answer_read(scope, receive, send, match.groups(), template, read)
                    return
        await inner(scope, receive, send)

    async def _answer_read(
        scope: Scope, receive: Receive, send: Send, params: tuple[str, ...], template: str, read: _Read
    ) -> None:
        """The limits report and the read-only check, as their routes answer them (guard, snapshot, service)."""
        query = _CHECK_QUERY.fullmatch(scope.get("query_string", b"")) if template == CHECK_TEMPLATE else None
        authorization = [value for name, value in scope["headers"] if name.lower() == b"authorization"]
        if (
            len(authorization) != 1
            or (template == LIMITS_TEMPLATE and scope.get("query_string"))
            or (template == CHECK_TEMPLATE and query is None)
        ):
            await inner(scope, receive, send)
            return
        amount = int(query.group(1)) if query is not None and query.group(1) is not None else 1
        if amount > MAX_QUANTITY:
            await inner(scope, receive, send)
            return

        async def produce(state: BillingState, snapshot: AccountSnapshot) -> bytes:
            return await read(state, snapshot, params, amount)

        await _answer(scope, receive, send, template, authorization[0], params[0], 200, produce)

    async def _answer(
        scope: Scope,
        receive: Receive,
        send: Send,
        template: str,
        authorization: bytes,
        external_id: str,
        status: int,
        produce: Callable[[BillingState, AccountSnapshot], Awaitable[bytes]],
    ) -> None:
        """As the route: authenticate as its guard does (failures counted the same), take the account's snapshot, run
        ``produce``; answer its JSON body with ``status``, or the problem for whatever was raised (the one mapping)."""
        scope["path_template"] = template  # what Litestar's routing would set, for the metrics
        scheme, _, secret = authorization.decode("latin-1").partition(" ")
        secret = secret.strip()
        client = scope.get("client")
        state: BillingState = app.state[BILLING_STATE_KEY]
        try:
            platform = await accounts.authenticate_platform(
                state, secret if scheme.lower() == "bearer" and secret else None, address=client[0] if client else None
            )
            snapshot = await accounts.account_snapshot(state, platform, checked_external_id(external_id))
            payload = await produce(state, snapshot)
        except Exception as exc:
            await send_problem(scope, receive, send, exc)
            return
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [_JSON_HEADERS, (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload, "more_body": False})

    async def _serve(
        scope: Scope,
        receive: Receive,
        send: Send,
        params: tuple[str, ...],
        template: str,
        shape: FlatBody,
        call: _Call,
    ) -> None:
        authorization: list[bytes] = []
        content_type: list[bytes] = []
        for name, value in scope["headers"]:
            lowered = name.lower()
            if lowered == b"authorization":
                authorization.append(value)
            elif lowered == b"content-type":
                content_type.append(value)
            elif lowered == b"content-length" and (not value.isdigit() or int(value) > MAX_FAST_BODY_BYTES):
                await inner(scope, receive, send)
                return
        messages: list[ReceiveMessage] = []
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                await inner(scope, _replaying(messages, receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            chunks.append(chunk)
            if size > MAX_FAST_BODY_BYTES:
                await inner(scope, _replaying(messages, receive), send)
                return
            if not message.get("more_body", False):
                break
        body = shape.read(b"".join(chunks)) if len(authorization) == 1 and len(content_type) == 1 else None
        if body is None or not is_json_media_type(content_type[0].decode("latin-1")):
            await inner(scope, _replaying(messages, receive), send)
            return

        async def produce(state: BillingState, snapshot: AccountSnapshot) -> bytes:
            return encode_json({"data": await call(state, snapshot, body, params)})

        await _answer(scope, receive, send, template, authorization[0], params[0], 201, produce)

    return handler
