"""Admin routes for tokens and the audit log."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from litestar import Controller, delete, get, post
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth import tokens
from license_server.auth.audit import AuditFilter, list_audit_events
from license_server.auth.guards import needs
from license_server.auth.schemas import AuditEventOut, TokenCreate, TokenOut, TokenWithSecret
from license_server.auth.tokens import Actor, Permission
from license_server.runtime import Runtime
from license_server.schemas_common import Page

Limit = Annotated[int, Parameter(query="limit", ge=1, le=500)]
Offset = Annotated[int, Parameter(query="offset", ge=0, le=10_000_000)]
Filter = Annotated[str | None, Parameter(max_length=200)]


class TokenController(Controller):
    path = "/v1/admin/tokens"
    tags = ["tokens"]

    @post("/", opt=needs(Permission.MANAGE_TOKENS), summary="Create an admin token (shown once)")
    async def create(self, data: TokenCreate, db: AsyncSession, actor: Actor, runtime: Runtime) -> TokenWithSecret:
        created = await tokens.create_token(db, hasher=runtime.hasher, actor=actor, name=data.name, role=data.role,
                                            clock=runtime.clock)
        return TokenWithSecret(**TokenOut.model_validate(created.token).model_dump(), token=created.secret)

    @get("/", opt=needs(Permission.MANAGE_TOKENS), summary="List admin tokens")
    async def list_(self, db: AsyncSession) -> list[TokenOut]:
        return [TokenOut.model_validate(t) for t in await tokens.list_tokens(db)]

    @delete("/{token_id:uuid}", opt=needs(Permission.MANAGE_TOKENS), status_code=200, summary="Revoke a token")
    async def revoke(self, db: AsyncSession, actor: Actor, runtime: Runtime, token_id: uuid.UUID) -> TokenOut:
        token = await tokens.revoke_token(db, actor=actor, token_id=token_id, clock=runtime.clock)
        return TokenOut.model_validate(token)


class AuditController(Controller):
    path = "/v1/admin/audit-events"
    tags = ["audit"]

    @get("/", opt=needs(Permission.READ_AUDIT), summary="Audit events, newest first")
    async def list_(self, db: AsyncSession, limit: Limit = 50, offset: Offset = 0,
                    actor_name: Annotated[str | None, Parameter(query="actor", max_length=200)] = None,
                    action: Filter = None, target_type: Filter = None, target_id: Filter = None,
                    since: datetime | None = None, until: datetime | None = None) -> Page[AuditEventOut]:
        filters = AuditFilter(actor=actor_name, action=action, target_type=target_type, target_id=target_id,
                              since=since, until=until)
        rows, total = await list_audit_events(db, filters=filters, limit=limit, offset=offset)
        return Page(items=[AuditEventOut.model_validate(r) for r in rows], total=total, limit=limit, offset=offset)
