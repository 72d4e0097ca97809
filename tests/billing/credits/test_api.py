"""Credits over HTTP: the platform debits and reads with its secret, staff grant and read with admin tokens; amounts
are strings both ways, floats and other bad input get a 400 problem naming the field and write nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from license_server.auth.tokens import Role
from license_server.billing.credits.models import CreditMovement
from license_server.runtime import Runtime
from tests.billing.conftest import Platform, PlatformFactory
from tests.conftest import TokenFactory

pytestmark = pytest.mark.usefixtures("backend")


def _admin(platform: Platform, external_id: str, tail: str = "") -> str:
    return f"/v1/admin/billing/platforms/{platform.id}/accounts/{external_id}/credits{tail}"


async def _grant(
    client: httpx.AsyncClient, headers: dict[str, str], platform: Platform, external_id: str, **body: Any
) -> httpx.Response:
    return await client.post(_admin(platform, external_id, "/grants"), headers=headers, json=body)


async def _debit(client: httpx.AsyncClient, platform: Platform, external_id: str, **body: Any) -> httpx.Response:
    return await client.post(platform.url(external_id, "credits/debits"), headers=platform.headers, json=body)


async def _movements(runtime: Runtime) -> int:
    async with runtime.session_factory() as session:
        return int(await session.scalar(select(func.count()).select_from(CreditMovement)) or 0)


async def test_grant_debit_balance_and_ledger_over_http(
    client: httpx.AsyncClient, make_platform: PlatformFactory, owner_headers: dict[str, str]
) -> None:
    platform = await make_platform()
    granted = await _grant(
        client, owner_headers, platform, "ws-1", kind="prepaid", amount="20", idempotency_key="purchase-1"
    )
    assert granted.status_code == 201, granted.text
    body = granted.json()
    assert (body["kind"], body["amount"], body["grant"]["remaining"], body["replayed"]) == ("grant", "20", "20", False)
    assert body["balance"]["available"] == "20"

    debit = await _debit(client, platform, "ws-1", amount="12.5", idempotency_key="run-1", metadata={"app": "a"})
    assert debit.status_code == 201, debit.text
    data = debit.json()["data"]
    assert (data["amount"], data["flex"], data["draws"]) == (
        "-12.5",
        "0",
        [{"grant_id": body["grant"]["id"], "kind": "prepaid", "amount": "12.5"}],
    )
    assert data["balance"]["available"] == data["balance"]["prepaid"] == "7.5"

    balance = await client.get(platform.url("ws-1", "credits"), headers=platform.headers)
    assert balance.status_code == 200
    assert balance.json()["data"]["available"] == "7.5"
    assert balance.json()["data"]["flex_enabled"] is False
    ledger = (await client.get(platform.url("ws-1", "credits/ledger"), headers=platform.headers)).json()["data"]
    assert [(m["kind"], m["amount"]) for m in ledger["items"]] == [("debit", "-12.5"), ("grant", "20")]
    admin_ledger = await client.get(_admin(platform, "ws-1", "/ledger"), headers=owner_headers)
    assert admin_ledger.json()["items"] == ledger["items"]
    admin_balance = await client.get(_admin(platform, "ws-1"), headers=owner_headers)
    assert admin_balance.json()["available"] == "7.5"


async def test_credits_exhausted_with_flex_off_then_flex_on_draws_flex(
    client: httpx.AsyncClient, make_platform: PlatformFactory, owner_headers: dict[str, str], runtime: Runtime
) -> None:
    platform = await make_platform()
    await _grant(client, owner_headers, platform, "ws-1", kind="prepaid", amount="1", idempotency_key="g")
    before = await _movements(runtime)
    refused = await _debit(client, platform, "ws-1", amount="1.5", idempotency_key="run-1")
    assert refused.status_code == 402
    assert refused.json()["code"] == "credits_exhausted"
    assert refused.json()["errors"][0]["field"] == "amount"
    assert await _movements(runtime) == before
    flex = await client.put(
        f"/v1/admin/billing/platforms/{platform.id}/accounts/ws-1/flex", headers=owner_headers, json={"enabled": True}
    )
    assert flex.status_code == 200, flex.text
    accepted = await _debit(client, platform, "ws-1", amount="1.5", idempotency_key="run-1")
    assert accepted.status_code == 201, accepted.text
    data = accepted.json()["data"]
    assert (data["flex"], data["balance"]["flex_used"], data["balance"]["balance"]) == ("0.5", "0.5", "-0.5")


async def test_replays_answer_the_first_result_and_a_changed_body_is_409(
    client: httpx.AsyncClient, make_platform: PlatformFactory, owner_headers: dict[str, str], runtime: Runtime
) -> None:
    platform = await make_platform()
    await _grant(client, owner_headers, platform, "ws-1", kind="prepaid", amount="5", idempotency_key="g")
    first = (await _debit(client, platform, "ws-1", amount="2", idempotency_key="run-1")).json()["data"]
    again = (await _debit(client, platform, "ws-1", amount=2, idempotency_key="run-1")).json()["data"]
    assert (again["id"], again["replayed"], again["draws"]) == (first["id"], True, first["draws"])
    count = await _movements(runtime)
    changed = await _debit(client, platform, "ws-1", amount="3", idempotency_key="run-1")
    assert changed.status_code == 409
    assert (changed.json()["code"], changed.json()["errors"][0]["field"]) == (
        "idempotency_key_reused",
        "idempotency_key",
    )
    regrant = await _grant(client, owner_headers, platform, "ws-1", kind="prepaid", amount="6", idempotency_key="g")
    assert regrant.status_code == 409
    assert await _movements(runtime) == count


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"amount": 1.5}, "amount", "never a float"),
        ({"amount": "-1"}, "amount", "greater than or equal to 0"),
        ({"amount": "0"}, "amount", "greater than 0"),
        ({"amount": "0.0000001"}, "amount", "6 decimal places"),
        ({"amount": "1" + "0" * 30}, "amount", "less than"),
        ({"amount": "NaN"}, "amount", "finite"),
        ({"amount": "one"}, "amount", "decimal string"),
        ({"amount": True}, "amount", "never a float"),
        ({"amount": "1", "idempotency_key": ""}, "idempotency_key", "at least 1 character"),
        ({"amount": "1", "metadata": {"k": 1}, "colour": "red"}, "colour", "Extra inputs"),
    ],
)
async def test_bad_debits_are_400_naming_the_field_and_write_nothing(
    client: httpx.AsyncClient,
    make_platform: PlatformFactory,
    runtime: Runtime,
    body: dict[str, Any],
    field: str,
    message: str,
) -> None:
    platform = await make_platform()
    response = await _debit(client, platform, "ws-1", **{"idempotency_key": "k", **body})
    assert response.status_code == 400, response.text
    problem = response.json()
    assert problem["code"] == "validation_error"
    assert problem["errors"][0]["field"] == field
    assert message in problem["errors"][0]["message"]
    assert await _movements(runtime) == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "promotional", "amount": "5"}, "expires_at"),
        ({"kind": "prepaid", "amount": "5", "expires_at": "2030-01-01"}, "expires_at"),
        ({"kind": "bonus", "amount": "5"}, "kind"),
        ({"kind": "prepaid", "amount": 5.0}, "amount"),
    ],
)
async def test_bad_grants_are_400_and_write_nothing(
    client: httpx.AsyncClient,
    make_platform: PlatformFactory,
    owner_headers: dict[str, str],
    runtime: Runtime,
    body: dict[str, Any],
    field: str,
) -> None:
    platform = await make_platform()
    response = await _grant(client, owner_headers, platform, "ws-1", idempotency_key="g", **body)
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["field"] == field
    assert await _movements(runtime) == 0


async def test_who_may_do_what(
    client: httpx.AsyncClient, make_platform: PlatformFactory, make_token: TokenFactory
) -> None:
    platform = await make_platform()
    viewer = {"Authorization": f"Bearer {await make_token(Role.VIEWER)}"}
    billing = {"Authorization": f"Bearer {await make_token(Role.BILLING)}"}
    grant = {"kind": "prepaid", "amount": "1", "idempotency_key": "g"}
    assert (await _grant(client, viewer, platform, "ws-1", **grant)).status_code == 403
    assert (await _grant(client, billing, platform, "ws-1", **grant)).status_code == 201
    assert (await client.get(_admin(platform, "ws-1"), headers=billing)).status_code == 200
    assert (await client.get(_admin(platform, "ws-1"))).status_code == 401
    wrong = {"Authorization": "Bearer lsbp_not-a-secret"}
    assert (await client.get(platform.url("ws-1", "credits"), headers=wrong)).status_code == 401
    debit = await client.post(
        platform.url("ws-1", "credits/debits"), headers=wrong, json={"amount": "1", "idempotency_key": "k"}
    )
    assert debit.status_code == 401
