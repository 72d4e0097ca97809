"""Webhook endpoints, fan-out of events into deliveries, and signed delivery with retries (Standard Webhooks).

Three steps, each safe to run on several replicas at once:

- ``fan_out`` turns new events into one pending delivery per matching endpoint. Each endpoint keeps a cursor (the
  last event it has seen: by id on SQLite, by writing transaction and id on PostgreSQL, which needs no table lock);
  the deliveries and the cursor advance are written in one transaction, and the advance is a compare-and-set, so a
  second or concurrent run that lost the race rolls back and nothing is doubled.
- ``deliver_due`` claims each due delivery just before its attempt with a compare-and-set on ``next_attempt_at`` (a
  lease), POSTs the signed event to a checked address (``egress``), and records the outcome: success, or another
  attempt later with exponential backoff and full jitter. Endpoints are served side by side, a few attempts each.
- The admin actions (create, update, delete, rotate the secret, redeliver) write an audit event, as every action does.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import random
import secrets
import time
import uuid
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple, cast
from urllib.parse import urlsplit

import httpx
from sqlalchemy import CursorResult, and_, func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import license_server
from license_server.auth.audit import record_audit
from license_server.auth.tokens import Actor
from license_server.clock import Clock, utcnow
from license_server.db.base import new_id
from license_server.errors import NotFound, SecretUnreadable, ValidationFailed
from license_server.events.egress import DestinationRefused, Egress, IPNetwork, PinnedRequest
from license_server.events.models import Event, WebhookDelivery, WebhookEndpoint
from license_server.events.service import EventType
from license_server.metrics import WEBHOOK_ATTEMPTS, WEBHOOK_DELIVERY_LAG

if TYPE_CHECKING:
    # Type only: the caller (the runtime) hands the box in, so events does not depend on signing at run time.
    from license_server.signing.encryption import SecretBox

logger = logging.getLogger("license_server.webhooks")

SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks prefix, not a secret
SECRET_BYTES = 32
MAX_URL_LENGTH = 2048

FAN_OUT_BATCH = 1000

DELIVERY_TIMEOUT_SECONDS = 10.0
DELIVERY_CONCURRENCY = 10
# Of those, at most this many to one endpoint: a slow receiver holds a few slots, never all of them.
DELIVERY_CONCURRENCY_PER_ENDPOINT = 4
# A run starts no attempt after this long, so the next run (with the events since) is never far off.
DELIVERY_RUN_SECONDS = 10.0
MAX_ATTEMPTS = 15
BACKOFF_BASE = timedelta(seconds=5)
BACKOFF_CAP = timedelta(hours=6)
BACKOFF_FLOOR = timedelta(seconds=1)
MAX_ERROR_LENGTH = 500
USER_AGENT = f"license-server-webhooks/{license_server.__version__}"


class DeliveryState(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class EndpointWithSecret(NamedTuple):
    endpoint: WebhookEndpoint
    secret: str  # shown once, in the response to the create or rotate request


@dataclass(frozen=True)
class DeliveryView:
    delivery: WebhookDelivery
    event_type: str


# -- secrets and signatures -------------------------------------------------------------------------------------
def generate_secret() -> str:
    """``whsec_`` + base64 of 32 random bytes, as Standard Webhooks specifies."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def _seal_secret(secret_box: SecretBox, endpoint: WebhookEndpoint, secret: str) -> None:
    endpoint.encrypted_secret = secret_box.seal(secret, bound_to=str(endpoint.id))


def _open_secret(secret_box: SecretBox, endpoint: WebhookEndpoint) -> str:
    return secret_box.open(endpoint.encrypted_secret, bound_to=str(endpoint.id))


def _secret_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, *, message_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` header value: ``v1,`` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))."""
    digest = hmac.new(_secret_key(secret), f"{message_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def message_id(event_id: int) -> str:
    """The ``webhook-id``: one per event, so it is the same on every retry and redelivery."""
    return f"evt_{event_id}"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def event_payload(event: Event) -> dict[str, Any]:
    """The body Standard Webhooks recommends: type, timestamp, and the data (with the ids it concerns)."""
    data = dict(event.data or {})
    data.update(
        event_id=event.id,
        license_id=str(event.license_id) if event.license_id else None,
        activation_id=str(event.activation_id) if event.activation_id else None,
    )
    return {"type": event.type, "timestamp": _iso(event.occurred_at), "data": data}


def backoff_delay(attempts: int, *, rng: random.Random | None = None) -> timedelta:
    """Full jitter: uniformly random up to min(cap, base * 2^(attempts-1)), but never below the floor."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(attempts - 1, 0))
    chosen = (rng or _system_random).uniform(0, ceiling.total_seconds())
    return max(BACKOFF_FLOOR, timedelta(seconds=chosen))


_system_random = random.SystemRandom()


# -- validation -------------------------------------------------------------------------------------------------
def _validated_url(url: str, *, allowed_networks: Iterable[IPNetwork]) -> str:
    url = url.strip()
    problem = "url must be an absolute http:// or https:// URL with a host"
    if not url or len(url) > MAX_URL_LENGTH or any(c.isspace() or ord(c) < 0x20 for c in url):
        raise ValidationFailed(problem, field="url")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise ValidationFailed(problem, field="url") from exc
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValidationFailed(problem, field="url")
    try:
        Egress(allowed_networks).check_literal_host(parts.hostname)
    except DestinationRefused as exc:
        raise ValidationFailed(f"url: {exc}", field="url", code="webhook_destination_forbidden") from exc
    return url


def _validated_event_types(event_types: Sequence[str]) -> list[str]:
    valid = [t.value for t in EventType]
    unknown = [str(i) for i, value in enumerate(event_types) if value not in valid]
    if unknown:
        message = f"unknown event type at position {', '.join(unknown)}; valid types are {', '.join(valid)}"
        raise ValidationFailed(message, field="event_types")
    return list(dict.fromkeys(event_types))  # without duplicates, in the order given


def _origin(url: str) -> str:
    """What the audit log records of a URL: its paths and queries may embed the receiver's own credentials."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


async def _newest_cursor(session: AsyncSession) -> tuple[int, int]:
    """The fan-out cursor (txid, id) of "now": events after it are those not yet written or not yet finished."""
    if _is_postgres(session):
        return int(await session.scalar(_HORIZON) or 0), 0
    return 0, int(await session.scalar(select(func.coalesce(func.max(Event.id), 0))) or 0)


def _is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


# -- endpoints --------------------------------------------------------------------------------------------------
async def create_endpoint(
    session: AsyncSession,
    *,
    actor: Actor,
    url: str,
    secret_box: SecretBox,
    event_types: Sequence[str] = (),
    description: str = "",
    allowed_networks: Iterable[IPNetwork] = (),
    clock: Clock = utcnow,
) -> EndpointWithSecret:
    """A new endpoint receives the events emitted after its creation: its cursor starts at the newest event.

    The secret is stored encrypted (``secret_box``); ``allowed_networks`` are the non-public networks it may be in.
    """
    url = _validated_url(url, allowed_networks=allowed_networks)
    types = _validated_event_types(event_types)
    secret = generate_secret()
    endpoint = WebhookEndpoint(
        id=new_id(),
        url=url,
        description=description,
        event_types=types,
        enabled=True,
        created_at=clock(),
    )
    endpoint.last_event_txid, endpoint.last_event_id = await _newest_cursor(session)
    _seal_secret(secret_box, endpoint, secret)
    session.add(endpoint)
    await session.flush()
    await record_audit(
        session,
        actor=actor,
        action="webhook.created",
        target_type="webhook",
        target_id=endpoint.id,
        detail={"url": _origin(url), "event_types": types},
        clock=clock,
    )
    await session.commit()
    return EndpointWithSecret(endpoint, secret)


async def get_endpoint(session: AsyncSession, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    endpoint = await session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise NotFound(f"no webhook endpoint with id {endpoint_id}", field="endpoint_id", code="webhook_not_found")
    return endpoint


async def list_endpoints(session: AsyncSession, *, limit: int, offset: int) -> tuple[list[WebhookEndpoint], int]:
    total = await session.scalar(select(func.count()).select_from(WebhookEndpoint))
    rows = await session.scalars(
        select(WebhookEndpoint).order_by(WebhookEndpoint.created_at, WebhookEndpoint.id).limit(limit).offset(offset)
    )
    return list(rows.all()), int(total or 0)


async def update_endpoint(
    session: AsyncSession,
    *,
    actor: Actor,
    endpoint_id: uuid.UUID,
    url: str | None = None,
    event_types: Sequence[str] | None = None,
    enabled: bool | None = None,
    description: str | None = None,
    allowed_networks: Iterable[IPNetwork] = (),
    clock: Clock = utcnow,
) -> WebhookEndpoint:
    """Disabling pauses an endpoint: nothing is fanned out or sent to it until it is enabled, then it catches up."""
    endpoint = await get_endpoint(session, endpoint_id)
    detail: dict[str, Any] = {}
    if url is not None:
        endpoint.url = _validated_url(url, allowed_networks=allowed_networks)
        detail["url"] = _origin(endpoint.url)
    if event_types is not None:
        endpoint.event_types = detail["event_types"] = _validated_event_types(event_types)
    if enabled is not None:
        endpoint.enabled = detail["enabled"] = enabled
    if description is not None:
        endpoint.description = description
        detail["description"] = True
    await record_audit(
        session,
        actor=actor,
        action="webhook.updated",
        target_type="webhook",
        target_id=endpoint.id,
        detail=detail,
        clock=clock,
    )
    await session.commit()
    return endpoint


async def delete_endpoint(
    session: AsyncSession, *, actor: Actor, endpoint_id: uuid.UUID, clock: Clock = utcnow
) -> WebhookEndpoint:
    """The endpoint and its deliveries go; an attempt in flight finds nothing to record its outcome on."""
    endpoint = await get_endpoint(session, endpoint_id)
    await session.delete(endpoint)
    await record_audit(
        session,
        actor=actor,
        action="webhook.deleted",
        target_type="webhook",
        target_id=endpoint.id,
        detail={"url": _origin(endpoint.url)},
        clock=clock,
    )
    await session.commit()
    return endpoint


async def rotate_secret(
    session: AsyncSession, *, actor: Actor, endpoint_id: uuid.UUID, secret_box: SecretBox, clock: Clock = utcnow
) -> EndpointWithSecret:
    """Every attempt from now on, retries included, is signed with the new secret only."""
    endpoint = await get_endpoint(session, endpoint_id)
    secret = generate_secret()
    _seal_secret(secret_box, endpoint, secret)
    await record_audit(
        session,
        actor=actor,
        action="webhook.secret_rotated",
        target_type="webhook",
        target_id=endpoint.id,
        clock=clock,
    )
    await session.commit()
    return EndpointWithSecret(endpoint, secret)


# -- fan-out ----------------------------------------------------------------------------------------------------
# PostgreSQL takes an event's id at insert but shows the row at commit, so ids become visible out of order: a cursor
# over ids alone could pass an event whose transaction is still open, and it would never be sent. So on PostgreSQL
# each event carries the id of the transaction that wrote it (events.txid), and fan-out reads events in (txid, id)
# order, only those of transactions below a horizon that no transaction still open in this database has reached:
# they have all finished (committed, and visible, or rolled back), so no event can later appear behind the cursor.
# No lock is taken; an open writing transaction only holds fan-out back (never writers) until it ends.
#
# The horizon: the next transaction id, or the oldest id still running in this database (pg_stat_activity, and
# prepared transactions) if older. Not the snapshot's xmin, which counts every database of the cluster, so a long
# batch in a neighbouring database would stall webhooks. (Seeing other sessions' backend_xid needs the same role as
# the replicas and the CLI, or pg_read_all_stats.) pg_stat_activity reports 32-bit xids: they are widened against
# the next 64-bit id, which they are within 2^31 of. SQLite has one writer at a time: ids become visible in order,
# and the cursor is the id.
_HORIZON = text(
    """
WITH next AS (SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xid),
running AS (
    SELECT backend_xid::text::bigint AS xid FROM pg_stat_activity
    WHERE datname = current_database() AND backend_xid IS NOT NULL
    UNION ALL
    SELECT transaction::text::bigint FROM pg_prepared_xacts WHERE database = current_database()
)
SELECT least(
    next.xid,
    min(((next.xid >> 32) << 32) + running.xid
        - CASE WHEN ((next.xid >> 32) << 32) + running.xid > next.xid THEN 4294967296 ELSE 0 END)
)
FROM next LEFT JOIN running ON true
GROUP BY next.xid
"""
)


def _after(cursor: tuple[int, int], horizon: int | None) -> Any:
    txid, event_id = cursor
    if horizon is None:
        return Event.id > event_id
    return and_(
        Event.txid < horizon,
        or_(Event.txid > txid, and_(Event.txid == txid, Event.id > event_id)),
    )


def _order(horizon: int | None) -> tuple[Any, ...]:
    return (Event.id,) if horizon is None else (Event.txid, Event.id)


async def _nothing_to_fan_out(session: AsyncSession, horizon: int | None) -> bool:
    txid, event_id = WebhookEndpoint.last_event_txid, WebhookEndpoint.last_event_id
    if horizon is None:
        newer = Event.id > event_id
    else:
        newer = and_(Event.txid < horizon, or_(Event.txid > txid, and_(Event.txid == txid, Event.id > event_id)))
    behind = await session.scalar(
        select(WebhookEndpoint.id)
        .where(WebhookEndpoint.enabled.is_(True), select(Event.id).where(newer).exists())
        .limit(1)
    )
    return behind is None


async def fan_out(session: AsyncSession, *, clock: Clock = utcnow, batch_size: int = FAN_OUT_BATCH) -> int:
    """Create one pending delivery per new event for each enabled endpoint whose filter matches. Commits.

    Returns the number of deliveries created: 0 also when another run (here or on another replica) won the race.
    At most ``batch_size`` events per endpoint and run; the next run continues where this one stopped. Each
    endpoint's deliveries and its cursor's advance are one transaction, the advance a compare-and-set, so every
    event reaches each endpoint exactly once however many replicas run this.
    """
    horizon = int(await session.scalar(_HORIZON) or 0) if _is_postgres(session) else None
    if await _nothing_to_fan_out(session, horizon):
        await session.rollback()
        return 0
    now = clock()
    endpoints = (
        await session.execute(
            select(
                WebhookEndpoint.id,
                WebhookEndpoint.last_event_txid,
                WebhookEndpoint.last_event_id,
                WebhookEndpoint.event_types,
            )
            .where(WebhookEndpoint.enabled.is_(True))
            .order_by(WebhookEndpoint.id)  # one lock order for every replica
        )
    ).all()
    events_after: dict[tuple[int, int], Sequence[Any]] = {}  # endpoints usually share a cursor: read each once
    created = 0
    for endpoint_id, cursor_txid, cursor_id, event_types in endpoints:
        cursor = (int(cursor_txid), int(cursor_id))
        if cursor not in events_after:
            events_after[cursor] = (
                await session.execute(
                    select(Event.id, Event.type, Event.txid)
                    .where(_after(cursor, horizon))
                    .order_by(*_order(horizon))
                    .limit(batch_size)
                )
            ).all()
        events = events_after[cursor]
        if not events:
            continue
        wanted = set(event_types or ())
        rows = [
            {
                "id": new_id(),
                "endpoint_id": endpoint_id,
                "event_id": event.id,
                "state": DeliveryState.PENDING.value,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for event in events
            if not wanted or event.type in wanted
        ]
        if rows:
            await session.execute(insert(WebhookDelivery), rows)
        last = events[-1]
        advanced = cast(
            CursorResult[Any],
            await session.execute(
                update(WebhookEndpoint)
                .where(
                    WebhookEndpoint.id == endpoint_id,
                    WebhookEndpoint.last_event_txid == cursor_txid,
                    WebhookEndpoint.last_event_id == cursor_id,
                )
                .values(last_event_txid=cursor_txid if horizon is None else last.txid, last_event_id=last.id)
                .execution_options(synchronize_session=False)
            ),
        )
        if advanced.rowcount != 1:  # another run fanned these events out first: keep none of ours
            await session.rollback()
            return 0
        created += len(rows)
    await session.commit()
    # Metrics hook (ops15a, license_server/metrics.py): deliveries created per run, fan-out lag (horizon holds).
    return created


# -- delivery ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Due:
    delivery_id: uuid.UUID
    # next_attempt_at as read (never None for a due row): the claim takes the row only if nobody has moved it since
    seen: datetime | None


@dataclass(frozen=True)
class _Attempt:
    delivery_id: uuid.UUID
    claimed_until: datetime
    attempts: int
    url: str
    secret: str | None  # None when this server's keys do not open the stored secret
    message_id: str
    body: str
    occurred_at: datetime  # the event's: a success's delivery lag is measured from it


@dataclass(frozen=True)
class _Outcome:
    status_code: int | None
    error: str | None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _redacted(message: str, secret: str | None) -> str:
    if secret:
        for needle in (secret, secret.removeprefix(SECRET_PREFIX)):
            message = message.replace(needle, "[redacted]")
    return message[:MAX_ERROR_LENGTH]


def _due_now(now: datetime) -> tuple[Any, ...]:
    return (
        WebhookDelivery.state == DeliveryState.PENDING.value,
        WebhookDelivery.next_attempt_at <= now,
        WebhookEndpoint.enabled.is_(True),
    )


async def _endpoints_with_due_deliveries(
    session_factory: async_sessionmaker[AsyncSession], *, now: datetime
) -> list[uuid.UUID]:
    """The endpoints that have deliveries due, the one waiting longest first."""
    async with session_factory() as session:
        rows = await session.execute(
            select(WebhookDelivery.endpoint_id)
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .where(*_due_now(now))
            .group_by(WebhookDelivery.endpoint_id)
            .order_by(func.min(WebhookDelivery.next_attempt_at), WebhookDelivery.endpoint_id)
        )
        return list(rows.scalars().all())


async def _due_deliveries(
    session_factory: async_sessionmaker[AsyncSession], *, endpoint_id: uuid.UUID, now: datetime, limit: int
) -> list[_Due]:
    """Candidates only: reading them claims nothing, so a run never holds work it has not started."""
    async with session_factory() as session:
        rows = await session.execute(
            select(WebhookDelivery.id, WebhookDelivery.next_attempt_at)
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .where(WebhookDelivery.endpoint_id == endpoint_id, *_due_now(now))
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(limit)
        )
        return [_Due(delivery_id, seen) for delivery_id, seen in rows.all()]


async def _claim(
    session_factory: async_sessionmaker[AsyncSession],
    due: _Due,
    *,
    now: datetime,
    lease: timedelta,
    secret_box: SecretBox,
) -> _Attempt | None:
    """Take one delivery, just before its attempt: ours only if the compare-and-set on next_attempt_at won."""
    claimed_until = now + lease
    async with session_factory() as session:
        taken = cast(
            CursorResult[Any],
            await session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == due.delivery_id,
                    WebhookDelivery.state == DeliveryState.PENDING.value,
                    WebhookDelivery.next_attempt_at == due.seen,
                )
                .values(next_attempt_at=claimed_until)
                .execution_options(synchronize_session=False)
            ),
        )
        if taken.rowcount != 1:  # another run (here or on another replica) took it, or it changed meanwhile
            await session.rollback()
            return None
        row = (
            await session.execute(
                select(WebhookDelivery.attempts, WebhookEndpoint, Event)
                .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                .join(Event, Event.id == WebhookDelivery.event_id)
                .where(WebhookDelivery.id == due.delivery_id)
            )
        ).one()
        await session.commit()
    attempts, endpoint, event = row
    try:
        secret: str | None = _open_secret(secret_box, endpoint)
    except SecretUnreadable:
        logger.error("the signing secret of webhook endpoint %s cannot be decrypted; rotate it", endpoint.id)
        secret = None
    return _Attempt(
        delivery_id=due.delivery_id,
        claimed_until=claimed_until,
        attempts=attempts,
        url=endpoint.url,
        secret=secret,
        message_id=message_id(event.id),
        body=json.dumps(event_payload(event), separators=(",", ":"), default=str),
        occurred_at=event.occurred_at,
    )


async def _post(
    http_client: httpx.AsyncClient,
    url: httpx.URL,
    attempt: _Attempt,
    headers: dict[str, str],
    pinned: PinnedRequest,
    *,
    request_timeout: float,
) -> _Outcome:
    async with http_client.stream(
        "POST",
        url,
        content=attempt.body.encode(),
        headers={**headers, **pinned.headers},
        extensions=pinned.extensions,
        timeout=request_timeout,
        follow_redirects=False,
    ) as response:  # the body is never read: only the status matters
        if 200 <= response.status_code < 300:
            return _Outcome(response.status_code, None)
        reason = response.reason_phrase or ""
        return _Outcome(response.status_code, f"HTTP {response.status_code} {reason}".strip())


async def _send(
    http_client: httpx.AsyncClient, attempt: _Attempt, *, egress: Egress, clock: Clock, request_timeout: float
) -> _Outcome:
    if attempt.secret is None:
        return _Outcome(None, "not sent: the endpoint's signing secret cannot be decrypted with this server's keys")
    timestamp = int(clock().timestamp())
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": attempt.message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(
            attempt.secret, message_id=attempt.message_id, timestamp=timestamp, body=attempt.body
        ),
    }
    try:
        async with asyncio.timeout(request_timeout):  # in all: httpx's own timeouts are per read, and a server can drip
            pinned = await egress.pin(attempt.url)
            for url in pinned.urls[:-1]:
                try:
                    return await _post(http_client, url, attempt, headers, pinned, request_timeout=request_timeout)
                except httpx.ConnectError:  # nothing was sent: try the host's next address, as a browser would
                    continue
            return await _post(http_client, pinned.urls[-1], attempt, headers, pinned, request_timeout=request_timeout)
    except DestinationRefused as exc:  # nothing was sent, so there is no answer to report
        return _Outcome(None, f"not sent: {exc}")
    except TimeoutError:
        return _Outcome(None, f"timed out after {request_timeout:g} s")
    except httpx.TimeoutException as exc:
        return _Outcome(None, f"timed out after {request_timeout:g} s ({exc.__class__.__name__})")
    except (httpx.HTTPError, OSError, ValueError) as exc:  # ValueError: e.g. a URL httpx cannot use
        return _Outcome(None, _redacted(f"{exc.__class__.__name__}: {exc}", attempt.secret))


async def _record(
    session_factory: async_sessionmaker[AsyncSession],
    attempt: _Attempt,
    outcome: _Outcome,
    *,
    clock: Clock,
    max_attempts: int,
    rng: random.Random | None,
) -> None:
    now = clock()
    attempts = attempt.attempts + 1
    values: dict[str, Any] = {"attempts": attempts, "last_status_code": outcome.status_code}
    if outcome.succeeded:
        values.update(state=DeliveryState.SUCCEEDED.value, delivered_at=now, next_attempt_at=None, last_error=None)
    elif attempts >= max_attempts:
        values.update(state=DeliveryState.FAILED.value, next_attempt_at=None, last_error=outcome.error)
    else:
        values.update(next_attempt_at=now + backoff_delay(attempts, rng=rng), last_error=outcome.error)
    if values["last_error"] is not None:
        values["last_error"] = _redacted(values["last_error"], attempt.secret)
    async with session_factory() as session:
        # Only while our claim holds: a redelivery or a deleted endpoint in the meantime wins over this outcome.
        await session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == attempt.delivery_id,
                WebhookDelivery.state == DeliveryState.PENDING.value,
                WebhookDelivery.next_attempt_at == attempt.claimed_until,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        await session.commit()


def _count_attempt(outcome: _Outcome, attempt: _Attempt, *, now: datetime) -> None:
    if outcome.succeeded:
        WEBHOOK_ATTEMPTS.labels("success").inc()
        occurred = attempt.occurred_at if attempt.occurred_at.tzinfo else attempt.occurred_at.replace(tzinfo=UTC)
        WEBHOOK_DELIVERY_LAG.observe(max((now - occurred).total_seconds(), 0.0))
    else:
        WEBHOOK_ATTEMPTS.labels("http_error" if outcome.status_code is not None else "transport_error").inc()


async def deliver_due(
    session_factory: async_sessionmaker[AsyncSession],
    *,
    http_client: httpx.AsyncClient,
    secret_box: SecretBox,
    egress: Egress | None = None,
    clock: Clock = utcnow,
    limit: int = 100,
    request_timeout: float = DELIVERY_TIMEOUT_SECONDS,
    max_attempts: int = MAX_ATTEMPTS,
    concurrency: int = DELIVERY_CONCURRENCY,
    per_endpoint_concurrency: int = DELIVERY_CONCURRENCY_PER_ENDPOINT,
    run_seconds: float = DELIVERY_RUN_SECONDS,
    rng: random.Random | None = None,
) -> int:
    """Attempt up to ``limit`` due deliveries; returns how many were attempted.

    ``concurrency`` attempts at a time, at most ``per_endpoint_concurrency`` of them to one endpoint, so a slow
    endpoint holds a few slots and the others' deliveries go on. Each delivery is claimed just before its attempt,
    never while it waits for a slot, and the claim lasts well beyond the attempt's ``request_timeout``: another
    replica cannot take it over while it is in flight, and if this process dies mid-attempt it is due again after.
    No attempt starts after ``run_seconds``: the next run, which also sees newer deliveries, carries on.
    A misbehaving endpoint (errors, timeouts, bad URLs, forbidden addresses) costs its own deliveries a retry; it
    never raises here. ``egress`` decides which addresses may be sent to (public ones only, by default).
    """
    egress = egress or Egress()
    lease = timedelta(seconds=max(60.0, 3 * request_timeout))
    stop_at = time.monotonic() + run_seconds
    gate = asyncio.Semaphore(max(1, concurrency))
    unclaimed = limit  # attempts this run may still claim
    attempted = 0

    async def attempt_one(due: _Due) -> bool:
        """False when the run should stop taking work: out of budget or time."""
        nonlocal unclaimed, attempted
        async with gate:
            if unclaimed <= 0 or time.monotonic() >= stop_at:
                return False
            unclaimed -= 1  # reserved before the claim's await, so concurrent workers never exceed the limit
            attempt = await _claim(session_factory, due, now=clock(), lease=lease, secret_box=secret_box)
            if attempt is None:
                unclaimed += 1
                return True
            attempted += 1
            try:
                outcome = await _send(http_client, attempt, egress=egress, clock=clock, request_timeout=request_timeout)
            except Exception as exc:
                outcome = _Outcome(None, _redacted(f"{exc.__class__.__name__}: {exc}", attempt.secret))
            _count_attempt(outcome, attempt, now=clock())
            try:
                await _record(session_factory, attempt, outcome, clock=clock, max_attempts=max_attempts, rng=rng)
            except Exception:
                # The claim expires and the delivery is attempted again: at least once, never lost.
                logger.exception("could not record the outcome of webhook delivery %s", attempt.delivery_id)
            return True

    async def endpoint_lane(endpoint_id: uuid.UUID) -> None:
        lanes = max(1, per_endpoint_concurrency)
        queue: deque[_Due] = deque()
        refilling = asyncio.Lock()

        async def next_due() -> _Due | None:
            async with refilling:
                if not queue:
                    # A few at a time, read afresh: a long list read once goes stale as other replicas take its
                    # rows, and every row another took costs a lost compare-and-set. In an order of this run's
                    # own, so replicas reading the same rows mostly claim different ones (order is no guarantee).
                    due = await _due_deliveries(session_factory, endpoint_id=endpoint_id, now=clock(), limit=2 * lanes)
                    _system_random.shuffle(due)
                    queue.extend(due)
                return queue.popleft() if queue else None

        async def worker() -> None:
            while (due := await next_due()) is not None:
                if not await attempt_one(due):
                    return

        await asyncio.gather(*(worker() for _ in range(lanes)))

    async def guarded_lane(endpoint_id: uuid.UUID) -> None:
        try:
            await endpoint_lane(endpoint_id)
        except Exception:  # a database error in one lane leaves the others running; the next run retries
            logger.exception("webhook deliveries to endpoint %s stopped for this run", endpoint_id)

    endpoints = await _endpoints_with_due_deliveries(session_factory, now=clock())
    await asyncio.gather(*(guarded_lane(endpoint_id) for endpoint_id in endpoints))
    return attempted


# -- deliveries and events for the admin API --------------------------------------------------------------------
async def _delivery_view(session: AsyncSession, delivery_id: uuid.UUID) -> DeliveryView:
    row = (
        await session.execute(
            select(WebhookDelivery, Event.type)
            .join(Event, Event.id == WebhookDelivery.event_id)
            .where(WebhookDelivery.id == delivery_id)
        )
    ).first()
    if row is None:
        raise NotFound(
            f"no webhook delivery with id {delivery_id}", field="delivery_id", code="webhook_delivery_not_found"
        )
    return DeliveryView(row[0], row[1])


async def redeliver(
    session: AsyncSession, *, actor: Actor, delivery_id: uuid.UUID, clock: Clock = utcnow
) -> DeliveryView:
    """Whatever its state, the delivery is due now with a fresh budget of attempts and the same webhook-id."""
    view = await _delivery_view(session, delivery_id)
    delivery = view.delivery
    previous = {"state": delivery.state, "attempts": delivery.attempts}
    delivery.state = DeliveryState.PENDING.value
    delivery.attempts = 0
    delivery.next_attempt_at = clock()
    delivery.delivered_at = None
    await record_audit(
        session,
        actor=actor,
        action="webhook.redelivered",
        target_type="webhook_delivery",
        target_id=delivery.id,
        detail={"endpoint_id": str(delivery.endpoint_id), "event_id": delivery.event_id, "previous": previous},
        clock=clock,
    )
    await session.commit()
    return view


async def list_deliveries(
    session: AsyncSession,
    *,
    endpoint_id: uuid.UUID | None = None,
    state: DeliveryState | None = None,
    limit: int,
    offset: int,
) -> tuple[list[DeliveryView], int]:
    """Newest first."""
    conditions = []
    if endpoint_id is not None:
        await get_endpoint(session, endpoint_id)
        conditions.append(WebhookDelivery.endpoint_id == endpoint_id)
    if state is not None:
        conditions.append(WebhookDelivery.state == state.value)
    total = await session.scalar(select(func.count()).select_from(WebhookDelivery).where(*conditions))
    rows = await session.execute(
        select(WebhookDelivery, Event.type)
        .join(Event, Event.id == WebhookDelivery.event_id)
        .where(*conditions)
        .order_by(WebhookDelivery.event_id.desc(), WebhookDelivery.created_at.desc(), WebhookDelivery.id)
        .limit(limit)
        .offset(offset)
    )
    return [DeliveryView(delivery, event_type) for delivery, event_type in rows.all()], int(total or 0)


async def list_events(
    session: AsyncSession,
    *,
    type: EventType | None = None,
    license_id: uuid.UUID | None = None,
    after_id: int | None = None,
    limit: int,
    offset: int = 0,
) -> tuple[list[Event], int]:
    """Newest first; with ``after_id``, the events after it in ascending order (to follow the log from a cursor)."""
    conditions = []
    if type is not None:
        conditions.append(Event.type == type.value)
    if license_id is not None:
        conditions.append(Event.license_id == license_id)
    if after_id is not None:
        conditions.append(Event.id > after_id)
    total = await session.scalar(select(func.count()).select_from(Event).where(*conditions))
    order = Event.id.asc() if after_id is not None else Event.id.desc()
    rows = await session.scalars(select(Event).where(*conditions).order_by(order).limit(limit).offset(offset))
    return list(rows.all()), int(total or 0)
