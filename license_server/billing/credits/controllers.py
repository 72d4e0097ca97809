"""Credits over HTTP: the platform's debits and reads (platform secret), and staff grants and reads (admin token)."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromPath, JSONBody

from license_server.auth.guards import CurrentActor, needs
from license_server.auth.tokens import Permission
from license_server.billing.accounts import service as accounts
from license_server.billing.controllers import (  # the platform API's guard and account lookup, shared
    PLATFORM_ERRORS,
    PLATFORM_PREFIX,
    account_of_request,
    authenticate_platform,
    billing_state,
    checked_external_id,
)
from license_server.billing.credits import service
from license_server.billing.credits.schemas import (
    BalanceData,
    BalanceOut,
    CreditDebitIn,
    CreditGrantIn,
    CreditWriteData,
    CreditWriteOut,
    LedgerData,
    MovementOut,
)
from license_server.dependencies import Db, Limit, Offset
from license_server.schemas_common import Page, problem_spec

_DEBIT_ERRORS = {
    **PLATFORM_ERRORS,
    402: problem_spec("credits_exhausted: the grants cannot cover the debit and flex billing is off; nothing written"),
    409: problem_spec("idempotency_key_reused: the key was used for a different request"),
}


async def _ledger_page(db: Db, account_id: uuid.UUID, limit: int, offset: int) -> Page[MovementOut]:
    records, total = await service.list_movements(db, account_id=account_id, limit=limit, offset=offset)
    return Page(items=[MovementOut.of(r) for r in records], total=total, limit=limit, offset=offset)


class PlatformCreditsController(Controller):
    """A hosted platform debits its workspaces' credits and reads their balance and ledger."""

    path = PLATFORM_PREFIX + "/accounts/{external_id:str}/credits"
    tags = ["billing (platform API)"]
    guards = [authenticate_platform]

    @get(
        "/",
        summary="Credit balance: what grants hold by kind, flex on/off and this period's flex",
        responses=PLATFORM_ERRORS,
    )
    async def balance(self, request: Request[Any, Any, Any], external_id: FromPath[str], db: Db) -> BalanceData:
        state, snapshot = await account_of_request(request, external_id)
        balance = await service.credit_balance(db, account_id=snapshot.account_id, clock=state.clock)
        return BalanceData(data=BalanceOut.of(balance))

    @get("/ledger", summary="Every credit movement, newest first, each debit with its draws", responses=PLATFORM_ERRORS)
    async def ledger(
        self,
        request: Request[Any, Any, Any],
        external_id: FromPath[str],
        db: Db,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> LedgerData:
        _, snapshot = await account_of_request(request, external_id)
        return LedgerData(data=await _ledger_page(db, snapshot.account_id, limit, offset))

    @post(
        "/debits",
        summary="Debit credits: included, then promotional, then prepaid, then flex (idempotent by idempotency_key)",
        responses=_DEBIT_ERRORS,
    )
    async def debit(
        self, request: Request[Any, Any, Any], external_id: FromPath[str], db: Db, data: JSONBody[CreditDebitIn]
    ) -> CreditWriteData:
        state, snapshot = await account_of_request(request, external_id)
        result = await service.debit_credits(
            db,
            state=state,
            account_id=snapshot.account_id,
            amount=data.amount,
            idempotency_key=data.idempotency_key,
            description=data.description,
            metadata=data.metadata,
            clock=state.clock,
        )
        balance = await service.credit_balance(db, account_id=snapshot.account_id, clock=state.clock)
        return CreditWriteData(data=CreditWriteOut.of_write(result, balance))


class CreditsAdminController(Controller):
    """Staff grant credits and read any account's balance and ledger."""

    path = "/v1/admin/billing/platforms/{platform_id:uuid}/accounts/{external_id:str}/credits"
    tags = ["billing (admin)"]

    @get("/", summary="The account's credit balance", opt=needs(Permission.BILLING_READ))
    async def balance(
        self, request: Request[Any, Any, Any], db: Db, platform_id: FromPath[uuid.UUID], external_id: FromPath[str]
    ) -> BalanceOut:
        account = await accounts.get_account(db, platform_id, checked_external_id(external_id))
        return BalanceOut.of(
            await service.credit_balance(db, account_id=account.id, clock=billing_state(request).clock)
        )

    @get("/ledger", summary="The account's credit movements, newest first", opt=needs(Permission.BILLING_READ))
    async def ledger(
        self,
        db: Db,
        platform_id: FromPath[uuid.UUID],
        external_id: FromPath[str],
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> Page[MovementOut]:
        account = await accounts.get_account(db, platform_id, checked_external_id(external_id))
        return await _ledger_page(db, account.id, limit, offset)

    @post(
        "/grants",
        summary="Grant included, promotional or prepaid credits (idempotent by idempotency_key; the account is "
        "created if new)",
        opt=needs(Permission.BILLING_WRITE),
    )
    async def grant(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        actor: CurrentActor,
        platform_id: FromPath[uuid.UUID],
        external_id: FromPath[str],
        data: JSONBody[CreditGrantIn],
    ) -> CreditWriteOut:
        state = billing_state(request)
        account = await accounts.ensure_account(
            db, platform_id=platform_id, external_id=checked_external_id(external_id), clock=state.clock
        )
        account_id = account.id  # read now: the grant's transaction begins with a rollback, which expires objects
        result = await service.grant_credits(
            db,
            state=state,
            actor=actor,
            account_id=account_id,
            kind=data.kind,
            amount=data.amount,
            idempotency_key=data.idempotency_key,
            expires_at=data.expires_at,
            description=data.description,
            clock=state.clock,
        )
        balance = await service.credit_balance(db, account_id=account_id, clock=state.clock)
        return CreditWriteOut.of_write(result, balance)
