"""Admin routes for tokens and the audit log."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, delete, get, post
from litestar.params import FromPath, JSONBody, QueryParameter

from license_server.auth import tokens
from license_server.auth.audit import AuditFilter, list_audit_events
from license_server.auth.guards import CurrentActor, needs
from license_server.auth.schemas import AuditEventOut, TokenCreate, TokenOut, TokenWithSecret
from license_server.auth.tokens import Permission
from license_server.dependencies import Db, Limit, Offset, RuntimeDep
from license_server.schemas_common import Page, query_timestamp

Filter = Annotated[str | None, QueryParameter(max_length=200)]
# Parsed by query_timestamp, so query strings follow the body rules (an offset, the range, never a Unix number).
TimestampFilter = Annotated[
    str | None, QueryParameter(max_length=64, schema_extra={"format": "date-time"}, description="RFC 3339 or a date")
]


class TokenController(Controller):
    path = "/v1/admin/tokens"
    tags = ["tokens"]

    @post("/", opt=needs(Permission.MANAGE_TOKENS), summary="Create an admin token (shown once)")
    async def create(
        self, data: JSONBody[TokenCreate], db: Db, actor: CurrentActor, runtime: RuntimeDep
    ) -> TokenWithSecret:
        created = await tokens.create_token(
            db, hasher=runtime.hasher, actor=actor, name=data.name, role=data.role, clock=runtime.clock
        )
        return TokenWithSecret(**TokenOut.model_validate(created.token).model_dump(), token=created.secret)

    @get("/", opt=needs(Permission.MANAGE_TOKENS), summary="List admin tokens")
    async def list_(self, db: Db) -> list[TokenOut]:
        return [TokenOut.model_validate(t) for t in await tokens.list_tokens(db)]

    @delete("/{token_id:uuid}", opt=needs(Permission.MANAGE_TOKENS), status_code=200, summary="Revoke a token")
    async def revoke(self, db: Db, actor: CurrentActor, runtime: RuntimeDep, token_id: FromPath[uuid.UUID]) -> TokenOut:
        token = await tokens.revoke_token(db, actor=actor, token_id=token_id, clock=runtime.clock)
        return TokenOut.model_validate(token)


class AuditController(Controller):
    path = "/v1/admin/audit-events"
    tags = ["audit"]

    @get("/", opt=needs(Permission.READ_AUDIT), summary="Audit events, newest first")
    async def list_(
        self,
        db: Db,
        limit: Limit = 50,
        offset: Offset = 0,
        actor_name: Annotated[str | None, QueryParameter(name="actor", max_length=200)] = None,
        action: Filter = None,
        target_type: Filter = None,
        target_id: Filter = None,
        since: TimestampFilter = None,
        until: TimestampFilter = None,
    ) -> Page[AuditEventOut]:
        filters = AuditFilter(
            actor=actor_name,
            action=action,
            target_type=target_type,
            target_id=target_id,
            since=query_timestamp(since, "since"),
            until=query_timestamp(until, "until"),
        )
        rows, total = await list_audit_events(db, filters=filters, limit=limit, offset=offset)
        return Page(items=[AuditEventOut.model_validate(r) for r in rows], total=total, limit=limit, offset=offset)
