"""Admin tokens, roles and what each role may do."""

from __future__ import annotations

import getpass
import secrets
import uuid
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.audit import record_audit
from license_server.auth.hashing import SecretHasher
from license_server.auth.models import AdminToken
from license_server.clock import Clock, utcnow
from license_server.errors import TokenNotFound

TOKEN_PREFIX = "lsat_"  # noqa: S105 - a public prefix that makes tokens recognisable, not a secret
# Writing last_used_at on every request would turn reads into writes; once a minute is plenty.
LAST_USED_RESOLUTION_SECONDS = 60


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    ISSUER = "issuer"
    VIEWER = "viewer"
    BILLING = "billing"


class Permission(StrEnum):
    READ = "read"  # customers, plans, licenses, documents metadata
    READ_AUDIT = "read_audit"
    READ_USAGE = "read_usage"
    ISSUE_LICENSES = "issue_licenses"  # issue, renew, download documents, answer offline requests
    MANAGE_LICENSES = "manage_licenses"  # update terms, suspend, reinstate, revoke, rotate keys
    MANAGE_CUSTOMERS = "manage_customers"
    MANAGE_PLANS = "manage_plans"
    MANAGE_WEBHOOKS = "manage_webhooks"
    MANAGE_TOKENS = "manage_tokens"
    MANAGE_KEYS = "manage_keys"
    BILLING_READ = "billing:read"  # hosted billing: plans' billing terms, platforms, accounts, usage
    BILLING_WRITE = "billing:write"  # import plans, create platforms, subscriptions, overrides, flex


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.OWNER: frozenset(Permission),
    Role.ADMIN: frozenset(Permission) - {Permission.MANAGE_TOKENS, Permission.MANAGE_KEYS},
    Role.ISSUER: frozenset({Permission.READ, Permission.ISSUE_LICENSES}),
    Role.VIEWER: frozenset({Permission.READ, Permission.READ_AUDIT, Permission.READ_USAGE}),
    Role.BILLING: frozenset({Permission.READ_USAGE, Permission.BILLING_READ, Permission.BILLING_WRITE}),
}


@dataclass(frozen=True)
class Actor:
    """Who is acting: recorded on every audit event."""

    name: str
    role: Role

    def can(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]


def cli_actor() -> Actor:
    """The CLI acts with the owner's authority: whoever can run it can read the keys directory anyway."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Actor(name=f"cli:{user}", role=Role.OWNER)


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class CreatedToken:
    token: AdminToken
    secret: str


async def create_token(
    session: AsyncSession, *, hasher: SecretHasher, actor: Actor, name: str, role: Role, clock: Clock = utcnow
) -> CreatedToken:
    secret = generate_token()
    token = AdminToken(
        name=name,
        role=role.value,
        token_hash=hasher.digest(secret),
        token_hint=secret[-4:],
        created_at=clock(),
        created_by=actor.name,
    )
    session.add(token)
    await session.flush()
    await record_audit(
        session,
        actor=actor,
        action="token.created",
        target_type="token",
        target_id=token.id,
        detail={"name": name, "role": role.value},
        clock=clock,
    )
    await session.commit()
    return CreatedToken(token=token, secret=secret)


async def list_tokens(session: AsyncSession) -> list[AdminToken]:
    return list((await session.scalars(select(AdminToken).order_by(AdminToken.created_at))).all())


async def revoke_token(
    session: AsyncSession, *, actor: Actor, token_id: uuid.UUID, clock: Clock = utcnow
) -> AdminToken:
    token = await session.get(AdminToken, token_id)
    if token is None:
        raise TokenNotFound(f"no token with id {token_id}", field="token_id")
    if token.revoked_at is None:
        token.revoked_at = clock()
        await record_audit(
            session,
            actor=actor,
            action="token.revoked",
            target_type="token",
            target_id=token.id,
            detail={"name": token.name},
            clock=clock,
        )
        await session.commit()
    return token


async def authenticate(
    session: AsyncSession, *, hasher: SecretHasher, secret: str, clock: Clock = utcnow
) -> Actor | None:
    """The actor a bearer token stands for, or None. Unknown, malformed and revoked tokens look the same."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 128:
        return None
    token = await session.scalar(select(AdminToken).where(AdminToken.token_hash == hasher.digest(secret)))
    if token is None or token.revoked_at is not None or not hasher.matches(secret, token.token_hash):
        return None
    now = clock()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > LAST_USED_RESOLUTION_SECONDS:
        token.last_used_at = now
        await session.commit()
    return Actor(name=f"token:{token.name}:{token.id}", role=Role(token.role))
