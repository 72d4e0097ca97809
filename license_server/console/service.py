"""Staff users and their sessions: create, sign in (throttled), resolve a session cookie, sign out (everywhere).

Passwords are hashed with Argon2id (argon2-cffi's defaults: memory-hard, 64 MiB, parameters stored in the hash and
upgraded on the next sign-in when they change). Hashing runs in a worker thread so a sign-in does not stall the
event loop. Sessions live in the database: any replica serves them, and signing out everywhere is one UPDATE.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.audit import record_audit
from license_server.auth.hashing import SecretHasher
from license_server.auth.throttle import CredentialKind, record_failed_auth, refuse_if_guessing
from license_server.auth.tokens import Actor, Role
from license_server.clock import Clock, utcnow
from license_server.console.models import StaffSession, StaffUser
from license_server.errors import StaffSignInFailed, StaffUserExists, ValidationFailed

if TYPE_CHECKING:
    from license_server.runtime import Runtime

SESSION_PREFIX = "lscs_"  # a public prefix that makes a session cookie recognisable in a leak scan, not a secret
SESSION_LIFETIME = timedelta(hours=12)  # a working day, then sign in again
SESSION_IDLE_SECONDS = 2 * 3600
LAST_SEEN_RESOLUTION_SECONDS = 60  # writing last_seen_at on every page would turn reads into writes
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256  # hashing a megabyte of "password" is a denial of service, not a password

_PASSWORDS = PasswordHasher()
# Verified when the email is unknown, so a wrong email costs as long as a wrong password (no account enumeration).
_DUMMY_HASH = _PASSWORDS.hash(secrets.token_urlsafe(16))


def normalized_email(email: str) -> str:
    return email.strip().lower()


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed(f"the password must have at least {MIN_PASSWORD_LENGTH} characters", field="password")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationFailed(f"the password must have at most {MAX_PASSWORD_LENGTH} characters", field="password")


def staff_actor(user: StaffUser) -> Actor:
    """The actor a staff user acts as: the same roles and permissions as an admin token, named in the audit log."""
    return Actor(name=f"staff:{user.email}", role=Role(user.role))


async def create_staff_user(
    session: AsyncSession,
    *,
    email: str,
    password: str,
    role: Role,
    actor: Actor | None = None,
    clock: Clock = utcnow,
) -> StaffUser:
    email = normalized_email(email)
    if "@" not in email or len(email) > 320:
        raise ValidationFailed("an email address is needed", field="email")
    check_password_rules(password)
    user = StaffUser(
        email=email,
        password_hash=await asyncio.to_thread(_PASSWORDS.hash, password),
        role=role.value,
        created_at=clock(),
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:
        await session.rollback()
        raise StaffUserExists(f"a staff user {email} exists", field="email") from exc
    if actor is not None:
        await record_audit(
            session,
            actor=actor,
            action="staff.created",
            target_type="staff_user",
            target_id=user.id,
            detail={"email": email, "role": role.value},
            clock=clock,
        )
    await session.commit()
    return user


async def list_staff_users(session: AsyncSession) -> list[StaffUser]:
    return list((await session.scalars(select(StaffUser).order_by(StaffUser.email))).all())


def _verify(stored_hash: str, password: str) -> bool:
    try:
        return _PASSWORDS.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class SignedIn:
    user: StaffUser
    session: StaffSession
    cookie_secret: str  # goes into the cookie only; the database keeps its keyed hash


async def sign_in(
    session: AsyncSession,
    *,
    runtime: Runtime,
    email: str,
    password: str,
    address: str | None,
    clock: Clock = utcnow,
) -> SignedIn:
    email = normalized_email(email)
    # Counted per account AND address: a guesser at one account from one address slows only that pair. The owner
    # signing in from elsewhere, and every other account from the same address (an office NAT), are untouched.
    key = refuse_if_guessing(runtime, f"{email}|{address or 'unknown'}", CredentialKind.STAFF_PASSWORD)
    user = await session.scalar(select(StaffUser).where(StaffUser.email == email))
    too_long = len(password) > MAX_PASSWORD_LENGTH
    valid = not too_long and await asyncio.to_thread(_verify, user.password_hash if user else _DUMMY_HASH, password)
    if user is None or not valid or user.is_disabled:
        await record_failed_auth(runtime, key, password)
        raise StaffSignInFailed()
    if _PASSWORDS.check_needs_rehash(user.password_hash):
        user.password_hash = await asyncio.to_thread(_PASSWORDS.hash, password)
    now = clock()
    secret = SESSION_PREFIX + secrets.token_urlsafe(32)
    staff_session = StaffSession(
        staff_user_id=user.id,
        token_hash=runtime.hasher.digest(secret),
        created_at=now,
        last_seen_at=now,
        expires_at=now + SESSION_LIFETIME,
    )
    session.add(staff_session)
    await record_audit(
        session,
        actor=staff_actor(user),
        action="staff.signed_in",
        target_type="staff_user",
        target_id=user.id,
        detail={},
        clock=clock,
    )
    await session.commit()
    return SignedIn(user=user, session=staff_session, cookie_secret=secret)


@dataclass(frozen=True)
class LiveSession:
    user: StaffUser
    session: StaffSession

    @property
    def actor(self) -> Actor:
        return staff_actor(self.user)


async def resolve_session(
    session: AsyncSession, *, hasher: SecretHasher, cookie_secret: str, clock: Clock = utcnow
) -> LiveSession | None:
    """The live session a cookie stands for, or None (unknown, expired, idle, revoked, or its user disabled)."""
    if not cookie_secret.startswith(SESSION_PREFIX) or len(cookie_secret) > 128:
        return None
    row = (
        await session.execute(
            select(StaffSession, StaffUser)
            .join(StaffUser, StaffUser.id == StaffSession.staff_user_id)
            .where(StaffSession.token_hash == hasher.digest(cookie_secret))
        )
    ).first()
    if row is None:
        return None
    staff_session, user = row.tuple()
    now = clock()
    if user.is_disabled or not staff_session.is_live(now, SESSION_IDLE_SECONDS):
        return None
    if (now - staff_session.last_seen_at).total_seconds() > LAST_SEEN_RESOLUTION_SECONDS:
        staff_session.last_seen_at = now
        await session.commit()
    return LiveSession(user=user, session=staff_session)


async def sign_out(session: AsyncSession, *, session_id: uuid.UUID, clock: Clock = utcnow) -> None:
    await session.execute(
        update(StaffSession)
        .where(StaffSession.id == session_id, StaffSession.revoked_at.is_(None))
        .values(revoked_at=clock())
    )
    await session.commit()


async def sign_out_everywhere(
    session: AsyncSession, *, actor: Actor, staff_user_id: uuid.UUID, clock: Clock = utcnow
) -> int:
    """Revoke every live session of the user, on every replica at once (they all read the same rows)."""
    now = clock()
    result = await session.execute(
        update(StaffSession)
        .where(StaffSession.staff_user_id == staff_user_id, StaffSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    await record_audit(
        session,
        actor=actor,
        action="staff.signed_out_everywhere",
        target_type="staff_user",
        target_id=staff_user_id,
        detail={},
        clock=clock,
    )
    await session.commit()
    return int(result.rowcount or 0)  # type: ignore[attr-defined]  # CursorResult of an UPDATE
