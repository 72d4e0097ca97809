"""The deployment API's services: activate, poll, validate, report usage, deactivate.

Polls are the hot path: they read through short-lived caches (bounded staleness, ``poll_cache_seconds``), reuse the
signed document until its content changes or it nears its TTL, and record check-ins in memory for a batched write.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload, selectinload

from license_server.auth.hashing import SecretHasher
from license_server.auth.throttle import CredentialKind, record_failed_auth, refuse_if_guessing
from license_server.clock import Clock, utcnow
from license_server.deployments.activation_writer import (
    UNUSABLE,
    ActivationOutcome,
    ActivationRequest,
    activate_in_transaction,
)
from license_server.deployments.models import Activation, UsageReport
from license_server.deployments.runtime_state import (
    ActivationSnapshot,
    CachedDocument,
    CheckIn,
    LicenseSnapshot,
    PollState,
)
from license_server.deployments.usage import usage_summary
from license_server.errors import (
    ActivationNotFound,
    InvalidDeploymentToken,
    PermissionDenied,
    RateLimited,
    ValidationFailed,
)
from license_server.events.service import EventType, emit_event
from license_server.licenses.documents import build_license_claims, license_content, with_time_claims
from license_server.licenses.license_keys import normalise_license_key
from license_server.licenses.models import License
from license_server.licenses.service import LicenseView, get_license, license_view
from license_server.licenses.usage import UsageSummary
from license_server.lifecycle.status import Reason, Status, StatusResult, compute_status
from license_server.replicas.invalidation import Topic, publish

if TYPE_CHECKING:
    from license_server.runtime import Runtime
    from license_server.signing.service import Signer

DEPLOYMENT_TOKEN_PREFIX = "lsdt_"  # noqa: S105 - a public prefix that makes tokens recognisable
VALIDATION_TYPE = "license-validation+jwt"
VALIDATION_TTL = timedelta(minutes=5)
T = TypeVar("T")


def generate_deployment_token() -> str:
    return DEPLOYMENT_TOKEN_PREFIX + secrets.token_urlsafe(32)


# -- lookups ----------------------------------------------------------------------------------------------------
async def license_by_key(session: AsyncSession, runtime: Runtime, license_key: str) -> License | None:
    """Every key, well-formed or not, costs one HMAC and one indexed lookup: timing says nothing about existence."""
    digest = runtime.hasher.digest(normalise_license_key(license_key))
    return await session.scalar(
        select(License)
        .where(License.key_hash == digest)
        .options(joinedload(License.customer), joinedload(License.plan))
    )


async def _load_snapshot(session: AsyncSession, license_id: uuid.UUID, now: datetime) -> LicenseSnapshot:
    license = await session.scalar(
        select(License)
        .where(License.id == license_id)
        .options(selectinload(License.customer), selectinload(License.plan))
    )
    if license is None:  # deleted under a live token: treat the token as unknown
        raise InvalidDeploymentToken("the deployment token is unknown or deactivated")
    return LicenseSnapshot(view=license_view(license, now), usage=await usage_summary(session, license_id))


async def _license_snapshot(runtime: Runtime, license_id: uuid.UUID, now: datetime) -> LicenseSnapshot:
    async def load() -> LicenseSnapshot:
        async with runtime.session_factory() as session:
            return await _load_snapshot(session, license_id, now)

    return await runtime.poll_state.licenses.get(license_id, load)


async def authenticate_deployment(
    runtime: Runtime, token: str | None, *, address: str | None = None
) -> ActivationSnapshot:
    """The activation a deployment token stands for. Malformed and unknown tokens get the same answer, and every
    different wrong token counts against the caller's address, so guessing tokens hits 429 after a few dozen tries."""
    limiter_key = refuse_if_guessing(runtime, address, CredentialKind.DEPLOYMENT_TOKEN)
    try:
        return await _authenticate_deployment(runtime, token)
    except InvalidDeploymentToken:
        await record_failed_auth(runtime, limiter_key, token)
        raise


async def _authenticate_deployment(runtime: Runtime, token: str | None) -> ActivationSnapshot:
    if not token:
        raise InvalidDeploymentToken("send Authorization: Bearer <deployment token>")
    if len(token) > 128:
        raise InvalidDeploymentToken("the deployment token is unknown or deactivated")
    # No shortcut for a token without the lsdt_ prefix: every token costs one HMAC and one indexed lookup, so the
    # answer and its timing are the same for a malformed token and a well-formed unknown one.
    digest = runtime.hasher.digest(token)

    async def load() -> ActivationSnapshot:
        async with runtime.session_factory() as session:
            activation = await session.scalar(
                select(Activation).where(Activation.token_hash == digest, Activation.deactivated_at.is_(None))
            )
        if activation is None:
            raise InvalidDeploymentToken("the deployment token is unknown or deactivated")
        return ActivationSnapshot(activation.id, activation.license_id, activation.fingerprint)

    return await runtime.poll_state.activations.get(digest, load)


# -- documents --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SignedDocument:
    token: str
    etag: str


def status_checked_in(view: LicenseView, now: datetime) -> StatusResult:
    """The status as of this request, counting the request itself as a check-in."""
    facts = replace(view.license.facts(view.terms), last_check_in_at=now)
    if facts.first_activated_at is None:
        facts = replace(facts, first_activated_at=now)
    return compute_status(facts, now)


# A status computed for a poll is reused by the polls of the same license within this many seconds (a status change
# at a boundary, e.g. expiry, shows at most this late: well inside the poll path's bounded staleness).
STATUS_REUSE_SECONDS = 1.0


def _poll_status(state: PollState, snapshot: LicenseSnapshot, now: datetime) -> StatusResult:
    license_id = snapshot.view.license.id
    now_ts = now.timestamp()
    memo = state.statuses.get(license_id)
    if memo is not None and memo[0] is snapshot and 0 <= now_ts - memo[1] < STATUS_REUSE_SECONDS:
        return memo[2]
    status = status_checked_in(snapshot.view, now)
    state.statuses[license_id] = (snapshot, now_ts, status)
    return status


def document_for(runtime: Runtime, snapshot: LicenseSnapshot, status: StatusResult, now: datetime) -> SignedDocument:
    """The signed document for this content: reused while unchanged and fresh, re-signed otherwise."""
    state: PollState = runtime.poll_state
    view = snapshot.view
    cached = state.documents.get(view.license.id)
    now_ts = now.timestamp()
    if cached is not None and cached.kid in runtime.signer.keyring().revoked_kids:
        cached = None  # signed by a key retired since: sign again with the current key
    if cached is not None and cached.snapshot is snapshot and cached.status == status and now_ts < cached.refresh_after:
        return SignedDocument(cached.token, cached.etag)  # the hot path: nothing to build, hash or sign
    content = license_content(
        license=view.license,
        customer=view.customer,
        plan=view.plan,
        terms=view.terms,
        status=status,
        issuer=runtime.settings.issuer,
        usage=snapshot.usage,
    )
    content_hash = hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    if cached is not None and cached.content_hash == content_hash and now_ts < cached.refresh_after:
        state.documents[view.license.id] = replace(cached, snapshot=snapshot, status=status)
        return SignedDocument(cached.token, cached.etag)
    ttl = runtime.settings.document_ttl
    kid = runtime.signer.keyring().signer_kid
    token = runtime.signer.sign(with_time_claims(content, now=now, ttl=ttl))
    etag = '"' + hashlib.sha256(token.encode()).hexdigest()[:32] + '"'
    # Re-sign once half the TTL has passed, so clients always hold a document with plenty of life left.
    state.documents[view.license.id] = CachedDocument(
        content_hash, token, etag, now_ts + ttl.total_seconds() / 2, snapshot=snapshot, status=status, kid=kid
    )
    return SignedDocument(token, etag)


# -- activation -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ActivationResult:
    activation: Activation
    token: str | None  # None when an existing activation was returned without re-issuing its token
    created: bool
    document: SignedDocument


async def check_rate_limits(runtime: Runtime, *, address: str | None, license_key: str | None) -> None:
    """Per client address and per license key; on PostgreSQL one limit for all replicas (replicas/limits.py)."""
    state = runtime.poll_state
    retry = await state.address_limiter.hit(f"address:{address or 'unknown'}")
    if retry is None and license_key is not None:
        retry = await state.license_key_limiter.hit(runtime.hasher.digest(normalise_license_key(license_key)))
    if retry is not None:
        raise RateLimited(retry)


async def activate(
    session: AsyncSession | None,
    *,
    runtime: Runtime,
    license_key: str,
    fingerprint: str,
    hostname: str | None = None,
    product_version: str | None = None,
    metadata: dict[str, Any] | None = None,
    reissue_token: bool = False,
    clock: Clock = utcnow,
) -> ActivationResult:
    """Activate a deployment, or check in the existing activation of the same fingerprint (no second seat).

    The transaction is ``activate_in_transaction``: on SQLite batched with concurrent activations by the runtime's
    writer (group commit), elsewhere run in ``session`` (or a session of its own when None). Either way the answer
    comes only after the commit.
    """
    now = clock()
    request = _activation_request(
        runtime,
        license_key=license_key,
        fingerprint=fingerprint,
        hostname=hostname,
        product_version=product_version,
        metadata=metadata,
        reissue_token=reissue_token,
        now=now,
    )
    outcome = await _run_activation(runtime, session, request)
    return await _activation_committed(runtime, outcome, reissue_token=reissue_token, now=now)


async def _run_activation(
    runtime: Runtime, session: AsyncSession | None, request: ActivationRequest
) -> ActivationOutcome:
    if runtime.activation_writer is not None:
        return await runtime.activation_writer.submit(request)
    if session is None:
        async with runtime.session_factory() as own_session:
            return await _activate_in_session(own_session, runtime.hasher, request)
    return await _activate_in_session(session, runtime.hasher, request)


async def activate_license_install(
    runtime: Runtime,
    *,
    key_digest: str,
    fingerprint: str,
    activated_by: str,
    hostname: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Activation:
    """An activation for an install that authenticates otherwise than with the license key (a Dify install through
    the inner API): the same transaction as ``activate`` — same seat count under the same lock, same refusals, same
    events — for the license whose stored key digest the caller already holds. Its deployment token is never shown.

    Returns the activation (an existing live one of the same fingerprint, or a new one). Raises what ``activate``
    raises: ``TooManyActivations``, ``LicenseNotUsable``, ``LicenseKeyNotFound`` (the key was rotated meanwhile).
    """
    now = runtime.clock()
    request = ActivationRequest(
        key_digest=key_digest,
        fingerprint=fingerprint,
        now=now,
        token_factory=generate_deployment_token,
        hostname=hostname,
        metadata=metadata or {},
        activated_by=activated_by,
    )
    outcome = await _run_activation(runtime, None, request)
    license = outcome.license
    if outcome.first_activation or (license.status, license.status_reason) != outcome.previous_status:
        await runtime.invalidations.announce(runtime.engine, Topic.LICENSE, str(license.id))
    return outcome.activation


async def activate_with(
    session: AsyncSession,
    *,
    runtime: Runtime,
    license_key: str,
    fingerprint: str,
    then: Callable[[Activation, bool], Awaitable[T]],
    hostname: str | None = None,
    product_version: str | None = None,
    metadata: dict[str, Any] | None = None,
    clock: Clock = utcnow,
) -> tuple[ActivationResult, T]:
    """``activate``, and the caller's own writes (``then(activation, created)``), in ONE transaction of ``session``.

    The activation is ``activate_in_transaction``, run in ``session`` without the SQLite group-commit writer (for rare
    callers that must not leave an activation without their own rows). It serialises with every other activation of
    the license as the writer does: on SQLite it queues on the runtime's write gate and begins with ``BEGIN
    IMMEDIATE`` (the database write lock, held from the first read to the commit); on PostgreSQL the license row is
    read ``FOR UPDATE``. Whatever raises (a refusal, ``then``, the commit) rolls back all of it. A conflicting
    concurrent write (``IntegrityError``: the same fingerprint, or ``then``'s own unique rows) is retried once in a
    fresh transaction, which then sees the winner's rows. ``session`` must hold no uncommitted writes: it is rolled
    back first.
    """
    now = clock()
    request = _activation_request(
        runtime,
        license_key=license_key,
        fingerprint=fingerprint,
        hostname=hostname,
        product_version=product_version,
        metadata=metadata,
        reissue_token=False,
        now=now,
    )

    async def transaction() -> tuple[ActivationOutcome, T]:
        await session.rollback()
        async with runtime.write_gate:
            if runtime.settings.is_sqlite:
                await session.execute(text("BEGIN IMMEDIATE"))
            outcome = await session.run_sync(activate_in_transaction, runtime.hasher, request)
            extra = await then(outcome.activation, outcome.created)
            await session.commit()
        return outcome, extra

    outcome, extra = await _retried_once(session, transaction)
    return await _activation_committed(runtime, outcome, reissue_token=False, now=now), extra


def _activation_request(
    runtime: Runtime,
    *,
    license_key: str,
    fingerprint: str,
    hostname: str | None,
    product_version: str | None,
    metadata: dict[str, Any] | None,
    reissue_token: bool,
    now: datetime,
) -> ActivationRequest:
    return ActivationRequest(
        key_digest=runtime.hasher.digest(normalise_license_key(license_key)),
        fingerprint=fingerprint,
        now=now,
        token_factory=generate_deployment_token,
        hostname=hostname,
        product_version=product_version,
        metadata=metadata or {},
        reissue_token=reissue_token,
    )


async def _activation_committed(
    runtime: Runtime, outcome: ActivationOutcome, *, reissue_token: bool, now: datetime
) -> ActivationResult:
    """After an activation's commit: drop what the poll caches hold that it changed, and the document to answer."""
    if reissue_token and not outcome.created:
        # The old token must stop working, here at once and on every other replica.
        await runtime.invalidations.announce(runtime.engine, Topic.ACTIVATIONS)
    if await runtime.revocation_watch.check():
        runtime.poll_state.forget_documents_of(runtime.signer.keyring().revoked_kids)
    license = outcome.license
    changed = outcome.first_activation or (license.status, license.status_reason) != outcome.previous_status
    if changed:  # the license's document content changed, here and for every replica
        await runtime.invalidations.announce(runtime.engine, Topic.LICENSE, str(license.id))
    # A new activation adds no usage, so the usage polls see (at most poll_cache_seconds old) is the usage to show.
    cached = await _license_snapshot(runtime, license.id, now)
    if not changed and _same_document_inputs(cached.view, license):
        snapshot = cached  # says what a fresh view would: reuse it (and the document already signed for it)
    else:
        snapshot = LicenseSnapshot(view=license_view(license, now), usage=cached.usage)
    document = document_for(runtime, snapshot, outcome.status, now)
    return ActivationResult(
        activation=outcome.activation, token=outcome.token, created=outcome.created, document=document
    )


def _same_document_inputs(view: LicenseView, license: License) -> bool:
    """Whether a document built from ``view`` says what one built from the freshly read ``license`` would, status
    and usage aside: the license fields, customer, plan and terms ``license_content`` reads are all equal."""
    cached, customer, plan = view.license, license.customer, license.plan
    if (cached.id, cached.starts_at, cached.expires_at, cached.terms) != (
        license.id,
        license.starts_at,
        license.expires_at,
        license.terms,
    ):
        return False
    if (view.customer.id, view.customer.name, view.customer.external_id) != (
        customer.id,
        customer.name,
        customer.external_id,
    ):
        return False
    if view.plan is None or plan is None:
        return view.plan is None and plan is None
    return (view.plan.id, view.plan.code, view.plan.name, view.plan.terms) == (
        plan.id,
        plan.code,
        plan.name,
        plan.terms,
    )


async def _activate_in_session(
    session: AsyncSession, hasher: SecretHasher, request: ActivationRequest
) -> ActivationOutcome:

    async def transaction() -> ActivationOutcome:
        outcome = await session.run_sync(activate_in_transaction, hasher, request)
        await session.commit()
        return outcome

    return await _retried_once(session, transaction)


async def _retried_once(session: AsyncSession, transaction: Callable[[], Awaitable[T]]) -> T:
    """Run ``transaction`` (which commits); anything it raises rolls it back. An ``IntegrityError`` — the same
    fingerprint (or a caller's unique row) written concurrently by a winner — is retried once in a fresh
    transaction, which then finds and returns the winner's rows."""
    for attempt in range(2):
        try:
            return await transaction()
        except IntegrityError:
            await session.rollback()
            session.expunge_all()
            if attempt:
                raise
        except BaseException:
            await session.rollback()
            raise
    raise AssertionError("unreachable")


# -- polling ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PollResult:
    document: SignedDocument
    not_modified: bool


async def poll(
    runtime: Runtime, *, token: str | None, if_none_match: str | None, address: str | None = None
) -> PollResult:
    now = runtime.clock()
    activation = await authenticate_deployment(runtime, token, address=address)
    if await runtime.revocation_watch.check():  # a retirement imported on any replica, within the poll bound
        runtime.poll_state.forget_documents_of(runtime.signer.keyring().revoked_kids)
    snapshot = await _license_snapshot(runtime, activation.license_id, now)
    runtime.poll_state.check_ins.record(
        activation.id,
        CheckIn(activation.license_id, now, int(snapshot.view.terms.heartbeat_window.total_seconds())),
    )
    document = document_for(runtime, snapshot, _poll_status(runtime.poll_state, snapshot, now), now)
    not_modified = if_none_match is not None and document.etag in {tag.strip() for tag in if_none_match.split(",")}
    return PollResult(document=document, not_modified=not_modified)


# -- validation -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ValidationOutcome:
    valid: bool
    code: str
    detail: str
    status: str
    license_id: uuid.UUID | None  # None when no license has the key
    fingerprint: str | None  # the fingerprint asked about, if any
    nonce: str
    ts: int
    signed: str


async def _validation_verdict(
    session: AsyncSession, runtime: Runtime, license_key: str, fingerprint: str | None, now: datetime
) -> tuple[bool, str, str, str, uuid.UUID | None]:
    """The ordered guard clauses; the first that fails decides. (valid, code, detail, status, license id)."""
    license = await license_by_key(session, runtime, license_key)
    if license is None:
        return False, "NOT_FOUND", "no license matches this key", Status.NONE.value, None
    view = license_view(license, now)
    status, reason = view.status.status.value, view.status.reason
    for guard in (Reason.REVOKED, Reason.SUSPENDED, Reason.NOT_STARTED):
        if reason is guard:
            return False, guard.value, UNUSABLE[guard][1], status, license.id
    maintained = reason is Reason.EXPIRED and view.terms.enforcement.value == "maintain"
    if reason is Reason.EXPIRED and not maintained:
        return False, "EXPIRED", "the license has expired", status, license.id
    live = list(
        await session.scalars(
            select(Activation).where(Activation.license_id == license.id, Activation.deactivated_at.is_(None))
        )
    )
    if not live:
        return False, "NO_ACTIVATION", "the license has no activations", status, license.id
    if fingerprint is not None:
        match = next((a for a in live if a.fingerprint == fingerprint), None)
        if match is None:
            return False, "FINGERPRINT_MISMATCH", "no activation has this fingerprint", status, license.id
        if match.heartbeat_deadline < now:
            return False, "HEARTBEAT_DEAD", "this activation has not checked in within its window", status, license.id
    if reason is Reason.HEARTBEAT_MISSED:  # lost: with or without a fingerprint, nothing has checked in lately
        detail = "no deployment of this license has checked in within its heartbeat window"
        return False, "HEARTBEAT_DEAD", detail, status, license.id
    seats = view.terms.max_activations
    if seats and len(live) > seats:
        return False, "TOO_MANY_ACTIVATIONS", f"{len(live)} activations exceed the {seats} allowed", status, license.id
    if maintained:
        return True, "EXPIRED", "expired; enforcement 'maintain' keeps existing deployments working", status, license.id
    detail = "the license is valid" if status == "active" else f"the license is valid ({reason.value})"
    return True, "VALID", detail, status, license.id


async def validate(
    session: AsyncSession,
    *,
    runtime: Runtime,
    license_key: str,
    nonce: str,
    fingerprint: str | None = None,
    clock: Clock = utcnow,
) -> ValidationOutcome:
    now = clock()
    valid, code, detail, status, license_id = await _validation_verdict(session, runtime, license_key, fingerprint, now)
    ts = int(now.timestamp())
    claims: dict[str, Any] = {
        "ver": 1,
        "iss": runtime.settings.issuer,
        "valid": valid,
        "code": code,
        "detail": detail,
        "status": status,
        # What the verdict is about, so it cannot be replayed as the answer for another license or deployment.
        "license_id": None if license_id is None else str(license_id),
        "fingerprint": fingerprint,
        "nonce": nonce,
        "ts": ts,
        "iat": ts,
        "nbf": ts,
        "exp": ts + int(VALIDATION_TTL.total_seconds()),
    }
    signed = runtime.signer.sign(claims, typ=VALIDATION_TYPE)
    return ValidationOutcome(valid, code, detail, status, license_id, fingerprint, nonce, ts, signed)


# -- usage ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkspaceUsage:
    id: str
    members: int


@dataclass(frozen=True)
class UsageOutcome:
    report_id: int
    duplicate: bool
    usage: UsageSummary
    over_limits: list[str]


async def report_usage(
    session: AsyncSession,
    *,
    runtime: Runtime,
    activation: ActivationSnapshot,
    measured_at: datetime,
    workspaces: list[WorkspaceUsage],
    seats_used: int,
    idempotency_key: str,
    clock: Clock = utcnow,
) -> UsageOutcome:
    now = clock()
    if measured_at > now + timedelta(minutes=5):
        raise ValidationFailed("measured_at is in the future", field="measured_at")
    if len({w.id for w in workspaces}) != len(workspaces):
        raise ValidationFailed("workspace ids must be unique", field="workspaces")
    license = await session.get(License, activation.license_id, options=[selectinload(License.plan)])
    if license is None:
        raise InvalidDeploymentToken("the deployment token is unknown or deactivated")
    try:
        outcome = await store_usage_report(
            session,
            license=license,
            activation_id=activation.id,
            measured_at=measured_at,
            workspaces=workspaces,
            seats_used=seats_used,
            idempotency_key=idempotency_key,
            clock=clock,
        )
    except IntegrityError:  # the same idempotency key, concurrently: the other request stored it
        await session.rollback()
        return await report_usage(
            session,
            runtime=runtime,
            activation=activation,
            measured_at=measured_at,
            workspaces=workspaces,
            seats_used=seats_used,
            idempotency_key=idempotency_key,
            clock=clock,
        )
    if not outcome.duplicate:
        await publish(session, Topic.LICENSE, [str(license.id)])  # its usage is part of every replica's snapshot
        await session.commit()
        runtime.poll_state.forget_license(license.id)
    return outcome


async def store_usage_report(
    session: AsyncSession,
    *,
    license: License,
    activation_id: uuid.UUID,
    measured_at: datetime,
    workspaces: list[WorkspaceUsage],
    seats_used: int,
    idempotency_key: str,
    clock: Clock = utcnow,
) -> UsageOutcome:
    """Store one (already validated) report in the caller's transaction, which the caller commits, with the
    ``usage.over_limit`` event if it pushes a limit over. A report already stored under the idempotency key is a
    duplicate: nothing is written. Raises ``IntegrityError`` when the same key is being stored concurrently."""
    terms = license.effective_terms(license.plan)
    previous = await session.scalar(
        select(UsageReport).where(
            UsageReport.activation_id == activation_id, UsageReport.idempotency_key == idempotency_key
        )
    )
    if previous is not None:
        usage = await usage_summary(session, license.id)
        return UsageOutcome(previous.id, True, usage, usage.over_limits(terms))
    before = await usage_summary(session, license.id)
    report = UsageReport(
        activation_id=activation_id,
        license_id=license.id,
        idempotency_key=idempotency_key,
        measured_at=measured_at,
        received_at=clock(),
        seats_used=seats_used,
        workspace_count=len(workspaces),
        max_members=max((w.members for w in workspaces), default=0),
        workspaces=[{"id": w.id, "members": w.members} for w in workspaces],
    )
    session.add(report)
    await session.flush()
    after = await usage_summary(session, license.id)
    over = after.over_limits(terms)
    newly_over = [name for name in over if name not in before.over_limits(terms)]
    if newly_over:
        emit_event(
            session,
            type=EventType.USAGE_OVER_LIMIT,
            license_id=license.id,
            activation_id=activation_id,
            data={name: {"limit": getattr(terms, name).limit, "used": after.used(name)} for name in newly_over},
            clock=clock,
        )
    return UsageOutcome(report.id, False, after, over)


# -- deactivation -----------------------------------------------------------------------------------------------
async def deactivate(
    session: AsyncSession,
    *,
    runtime: Runtime,
    activation_id: uuid.UUID,
    by: str,
    own_activation: ActivationSnapshot | None = None,
    clock: Clock = utcnow,
) -> Activation:
    """Free the seat. A deployment may deactivate only itself; admins (``own_activation`` None) any activation."""
    if own_activation is not None and own_activation.id != activation_id:
        raise PermissionDenied("a deployment token may deactivate only its own activation")
    activation = await session.get(Activation, activation_id)
    if activation is None:
        raise ActivationNotFound(f"no activation with id {activation_id}", field="activation_id")
    if activation.deactivated_at is None:
        activation.deactivated_at, activation.deactivated_by = clock(), by
        # Every replica stops accepting the token (and recounts the seats) when this commits.
        await publish(session, Topic.ACTIVATIONS)
        await publish(session, Topic.LICENSE, [str(activation.license_id)])
        emit_event(
            session,
            type=EventType.ACTIVATION_DEACTIVATED,
            license_id=activation.license_id,
            activation_id=activation.id,
            data={"by": by},
            clock=clock,
        )
        await session.commit()
    runtime.poll_state.activations.clear()
    runtime.poll_state.forget_license(activation.license_id)
    return activation


# -- the vendor's download ---------------------------------------------------------------------------------------
async def license_document(
    session: AsyncSession,
    *,
    signer: Signer,
    issuer: str,
    license_id: uuid.UUID,
    ttl: timedelta,
    clock: Clock = utcnow,
) -> str:
    """The signed document, with the usage the license's deployments report (``GET /v1/admin/licenses/{id}/document``,
    ``licenses document``). Revoked and suspended licenses get one too: it is how deployments learn of it."""
    now = clock()
    view = await get_license(session, license_id, clock=lambda: now)
    claims = build_license_claims(
        usage=await usage_summary(session, license_id),
        license=view.license,
        customer=view.customer,
        plan=view.plan,
        terms=view.terms,
        status=view.status,
        issuer=issuer,
        now=now,
        ttl=ttl,
    )
    return signer.sign(claims)
