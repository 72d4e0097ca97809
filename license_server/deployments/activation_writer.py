"""The write side of activation: one transaction's worth of work, and the SQLite group-commit writer that runs it.

``activate_in_transaction`` is plain synchronous SQLAlchemy (one ORM read of the license, Core statements for the
writes), so the same code runs

- on SQLite in :class:`SqliteActivationWriter`: one thread with its own ``sqlite3`` connection takes every pending
  activation in one ``BEGIN IMMEDIATE`` transaction (each in its own savepoint), commits once, and only then answers
  them. Through aiosqlite every statement is a hop between the event loop and the driver's thread (~0.2 ms of CPU
  each, a dozen or more per activation); here a whole batch costs one hop.
- on PostgreSQL inside the request's ``AsyncSession`` via ``run_sync``; the license row lock serialises seats.

Nothing is acknowledged before its transaction has committed, so a crash loses only unanswered requests.
"""

from __future__ import annotations

import contextlib
import functools
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Engine, Table, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from license_server.auth.hashing import SecretHasher
from license_server.db.base import new_id
from license_server.db.group_commit import SqliteGroupCommitWriter
from license_server.deployments.models import Activation
from license_server.errors import LicenseKeyNotFound, LicenseNotUsable, LicenseServerError, TooManyActivations
from license_server.events.models import Event
from license_server.events.service import EventType
from license_server.licenses.models import License
from license_server.licenses.terms import LicenseTerms, effective_terms
from license_server.lifecycle.status import Reason, StatusResult, compute_status

# Refusal codes of activation, by the reason the status function gives.
UNUSABLE = {
    Reason.REVOKED: ("license_revoked", "the license has been revoked"),
    Reason.SUSPENDED: ("license_suspended", "the license is suspended"),
    Reason.NOT_STARTED: ("license_not_started", "the license has not started yet"),
    Reason.EXPIRED: ("license_expired", "the license has expired"),
}
_ACTIVATIONS = cast(Table, Activation.__table__)
_EVENTS = cast(Table, Event.__table__)
_LICENSES = cast(Table, License.__table__)
# The columns an activation writes on its license: the check-in and everything derived from it.
_LICENSE_DERIVED = (
    "last_check_in_at",
    "updated_at",
    "expiring_at",
    "grace_ends_at",
    "heartbeat_deadline",
    "heartbeat_seconds",
    "enforcement",
    "status",
    "status_reason",
)
_ACTIVATION_COLUMNS = [(prop.key, prop.columns[0].name) for prop in Activation.__mapper__.column_attrs]
# Built once: executing a prebuilt statement with a parameter dict skips building and cache-keying it per call.
_UPDATE_LICENSE = update(_LICENSES).where(_LICENSES.c.id == bindparam("b_id"))
_CLAIM_FIRST_ACTIVATION = (
    update(_LICENSES)
    .where(_LICENSES.c.id == bindparam("b_id"), _LICENSES.c.first_activated_at.is_(None))
    .values(first_activated_at=bindparam("b_now"))
)
_LIVE = (_ACTIVATIONS.c.license_id == bindparam("b_license_id"), _ACTIVATIONS.c.deactivated_at.is_(None))
_SAME_FINGERPRINT = select(_ACTIVATIONS).where(*_LIVE, _ACTIVATIONS.c.fingerprint == bindparam("b_fingerprint"))
_COUNT_LIVE = select(func.count()).select_from(_ACTIVATIONS).where(*_LIVE)
_UPDATE_ACTIVATION = update(_ACTIVATIONS).where(_ACTIVATIONS.c.id == bindparam("b_id"))
_INSERT_ACTIVATION = insert(_ACTIVATIONS)
_INSERT_EVENT = insert(_EVENTS)
_LICENSE_BY_KEY = (
    select(License)
    .where(License.key_hash == bindparam("b_key_hash"))
    .options(joinedload(License.customer), joinedload(License.plan))
    .with_for_update(of=License)  # PostgreSQL: the row lock seats are counted under; SQLite: omitted
)


@dataclass(frozen=True)
class ActivationRequest:
    key_digest: str  # the keyed hash of the normalised license key
    fingerprint: str
    now: datetime
    token_factory: Callable[[], str]
    hostname: str | None = None
    product_version: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    reissue_token: bool = False


@dataclass(frozen=True)
class ActivationOutcome:
    activation: Activation  # detached: a plain record of the committed row
    token: str | None
    created: bool
    license: License  # detached, with customer and plan loaded and the written values applied
    first_activation: bool
    previous_status: tuple[str, str]
    status: StatusResult


def _activation_record(row: Any) -> Activation:
    return Activation(**{key: row._mapping[column] for key, column in _ACTIVATION_COLUMNS})


@dataclass
class _LockedLicense:
    license: License  # detached; the activations of this transaction apply their changes to it
    terms: LicenseTerms
    live: int | None = None  # live activations: counted once, then kept up to date by this transaction
    dirty: bool = False  # changed since read: written back by ActivationTransaction.flush


class ActivationTransaction:
    """The licenses one transaction has read (under its lock) and changed.

    Several activations of one license in one transaction (a batch) read the license row once, count its seats once
    and write it back once, in ``flush``, before the commit.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self.connection = session.connection()
        self._locked: dict[str, _LockedLicense] = {}

    def license(self, key_digest: str) -> _LockedLicense | None:
        locked = self._locked.get(key_digest)
        if locked is None:
            license = self.session.scalar(_LICENSE_BY_KEY, {"b_key_hash": key_digest})
            if license is None:
                return None
            self.session.expunge(license)  # a plain record from here on: the writes are Core statements
            locked = self._locked[key_digest] = _LockedLicense(license, _effective_terms(license))
        return locked

    def flush(self) -> None:
        for locked in self._locked.values():
            if locked.dirty:
                license = locked.license
                derived = {name: getattr(license, name) for name in _LICENSE_DERIVED}
                self.connection.execute(_UPDATE_LICENSE, {"b_id": license.id, **derived})
                locked.dirty = False


def activate_in_transaction(session: Session, hasher: SecretHasher, request: ActivationRequest) -> ActivationOutcome:
    """Activate (or check in an existing activation) inside the caller's transaction; the caller commits."""
    transaction = ActivationTransaction(session)
    outcome = activate_one(transaction, hasher, request)
    transaction.flush()
    return outcome


def activate_one(
    transaction: ActivationTransaction, hasher: SecretHasher, request: ActivationRequest
) -> ActivationOutcome:
    """One activation in ``transaction``; the license row is written by ``transaction.flush()``.

    The license is read under a lock (``FOR UPDATE`` on PostgreSQL; on SQLite the caller holds the database write
    lock), so the same fingerprint is looked up and the seats are counted with no concurrent activation in between.
    Every refusal is raised before the first write (and before any change to the license read): a refused activation
    leaves nothing to undo.
    """
    now = request.now
    locked = transaction.license(request.key_digest)
    if locked is None:
        raise LicenseKeyNotFound("no license matches this key", field="license_key")
    license, terms = locked.license, locked.terms
    status_now = compute_status(license.facts(terms), now)
    refusal = UNUSABLE.get(status_now.reason)
    if refusal and not (status_now.reason is Reason.EXPIRED and terms.enforcement.value == "maintain"):
        raise LicenseNotUsable(refusal[1], field="license_key", code=refusal[0])
    connection = transaction.connection
    existing = connection.execute(
        _SAME_FINGERPRINT, {"b_license_id": license.id, "b_fingerprint": request.fingerprint}
    ).first()
    seats = terms.max_activations
    if existing is None and seats:
        if locked.live is None:
            locked.live = connection.scalar(_COUNT_LIVE, {"b_license_id": license.id}) or 0
        if locked.live >= seats:
            raise TooManyActivations(f"all {seats} activations of this license are in use", field="fingerprint")
    # -- the writes: nothing below refuses
    previous_status = (license.status, license.status_reason)
    first_activation = license.first_activated_at is None
    if first_activation:
        license.first_activated_at = now
    license.last_check_in_at = license.updated_at = now
    status = license.refresh(terms, now)
    locked.dirty = True
    events: list[dict[str, Any]] = []
    if first_activation:
        # Guarded, so that however the license was read only one activation records it and emits license.activated.
        claimed = connection.execute(_CLAIM_FIRST_ACTIVATION, {"b_id": license.id, "b_now": now})
        if claimed.rowcount:
            events.append(_event(EventType.LICENSE_ACTIVATED, license.id, None, {}, now))
    heartbeat = terms.heartbeat_window
    token: str | None = None
    if existing is not None:
        activation, created = _activation_record(existing), False
        activation.last_seen_at, activation.heartbeat_deadline, activation.lost_at = now, now + heartbeat, None
        changes: dict[str, Any] = {"last_seen_at": now, "heartbeat_deadline": now + heartbeat, "lost_at": None}
        if request.reissue_token:
            token = request.token_factory()
            activation.token_hash, activation.token_hint = hasher.digest(token), token[-4:]
            changes.update(token_hash=activation.token_hash, token_hint=activation.token_hint)
        connection.execute(_UPDATE_ACTIVATION, {"b_id": activation.id, **changes})
    else:
        token = request.token_factory()
        activation = Activation(
            id=new_id(),
            license_id=license.id,
            fingerprint=request.fingerprint,
            hostname=request.hostname,
            product_version=request.product_version,
            extra_metadata=request.metadata,
            token_hash=hasher.digest(token),
            token_hint=token[-4:],
            created_at=now,
            last_seen_at=now,
            heartbeat_deadline=now + heartbeat,
            lost_at=None,
            sweep_mark=None,
            deactivated_at=None,
            deactivated_by=None,
        )
        row = {column: getattr(activation, key) for key, column in _ACTIVATION_COLUMNS}
        connection.execute(_INSERT_ACTIVATION, row)
        if locked.live is not None:
            locked.live += 1
        created = True
        events.append(
            _event(
                EventType.ACTIVATION_CREATED,
                license.id,
                activation.id,
                {"fingerprint": request.fingerprint, "hostname": request.hostname},
                now,
            )
        )
    for row in events:  # in order: license.activated before activation.created
        connection.execute(_INSERT_EVENT, row)
    return ActivationOutcome(activation, token, created, license, first_activation, previous_status, status)


@functools.lru_cache(maxsize=1024)
def _terms_from_json(plan_terms: str, license_terms: str) -> LicenseTerms:
    return effective_terms(json.loads(plan_terms), json.loads(license_terms))


def _effective_terms(license: License) -> LicenseTerms:
    """``License.effective_terms``, memoised on the stored overrides (validating them is most of an activation's
    Python work otherwise). The result is shared: nothing mutates terms."""
    plan_terms = license.plan.terms if license.plan else {}
    return _terms_from_json(json.dumps(plan_terms, sort_keys=True), json.dumps(license.terms, sort_keys=True))


def _event(
    type: EventType, license_id: uuid.UUID, activation_id: uuid.UUID | None, data: dict[str, Any], now: datetime
) -> dict[str, Any]:
    return {
        "type": type.value,
        "occurred_at": now,
        "license_id": license_id,
        "activation_id": activation_id,
        "data": data,
    }


class SqliteActivationWriter(SqliteGroupCommitWriter[ActivationRequest, ActivationOutcome]):
    """Group commit of activations: a batch runs in one ``BEGIN IMMEDIATE`` transaction and is answered only after
    the commit (see ``license_server.db.group_commit``)."""

    thread_name = "sqlite-activations"

    def __init__(
        self,
        async_url: str,
        *,
        hasher: Callable[[], SecretHasher],
        write_gate: contextlib.AbstractAsyncContextManager[object],
    ) -> None:
        super().__init__(async_url, write_gate=write_gate)
        self._hasher = hasher

    def write_batch(self, engine: Engine, requests: list[ActivationRequest]) -> list[ActivationOutcome | BaseException]:
        return _write_batch(engine, self._hasher(), requests)


def _write_batch(
    engine: Engine, hasher: SecretHasher, batch: list[ActivationRequest]
) -> list[ActivationOutcome | BaseException]:
    """One transaction for the whole batch. Runs in the writer thread.

    A refusal (a LicenseServerError) is raised before its activation writes anything, so it is simply that request's
    answer. Any other failure leaves the transaction in an unknown state: it is rolled back and every activation of
    the batch is retried in a transaction of its own, so one bad request cannot fail the others.
    """
    results: list[ActivationOutcome | BaseException] = []
    try:
        with engine.connect() as connection, connection.begin():
            # Joined to the transaction begun above, the session only reads; it neither commits nor rolls back.
            session = Session(bind=connection, join_transaction_mode="rollback_only", autoflush=False)
            transaction = ActivationTransaction(session)
            for request in batch:
                try:
                    results.append(activate_one(transaction, hasher, request))
                except LicenseServerError as refusal:
                    results.append(refusal)
            transaction.flush()
    except Exception:
        return [_alone(engine, hasher, request) for request in batch]
    return results


def _alone(engine: Engine, hasher: SecretHasher, request: ActivationRequest) -> ActivationOutcome | Exception:
    """One activation in its own transaction; a conflicting same-fingerprint activation (another process) is retried
    once, which then finds and returns it."""
    for attempt in range(2):
        try:
            with engine.connect() as connection, connection.begin():
                session = Session(bind=connection, join_transaction_mode="rollback_only", autoflush=False)
                return activate_in_transaction(session, hasher, request)
        except IntegrityError as exc:
            if attempt:
                return exc
        except Exception as exc:
            return exc
    raise AssertionError("unreachable")
