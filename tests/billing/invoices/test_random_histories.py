"""1,000 random usage and credit histories, each invoiced twice through the storage, on SQLite and PostgreSQL; every
invoice's total equals an independent recomputation to the cent, and a sample of PDFs shows the same totals.

Each account has its own plan (a random price in cents, included credits, a flex credit price with up to four
decimal places), an anchor anywhere in January 2026 (the 29th-31st clamp in February), flex on for most, sometimes
prepaid credits, credit debits (through the real ledger) and usage events with costs of up to ten decimal places,
spread over three periods. Invoices are issued at the end of March and at the end of April (every account is then
in its third, then its fourth period). The recomputation walks the history itself — included credits of the
debit's cycle first, then prepaid, then flex; with flex off a debit the grants cannot cover is refused — and prices
each invoice's arrears window: [the second period's start, the third's) for the first invoice, [the third's, the
fourth's) for the second. The first 60 histories' debits go through the credits ledger itself; the others' are
written as ledger rows with the flex the walk computes (the ledger's own tests cover its burn-down; a thousand
histories through its one-transaction-per-debit path would take minutes on this disk). Seeded, so a failure
reproduces.
"""

from __future__ import annotations

import contextlib
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from sqlalchemy import insert, select

from license_server.auth.tokens import Actor
from license_server.billing.accounts.models import BillingAccount, BillingPlatform, Subscription
from license_server.billing.credits import service as credits
from license_server.billing.credits.burndown import CreditKind
from license_server.billing.credits.models import CreditMovement
from license_server.billing.invoices.models import Invoice, InvoiceLine
from license_server.billing.periods import add_months
from license_server.billing.usage.models import UsageEvent
from license_server.errors import CreditsExhausted
from license_server.licenses.models import Plan
from license_server.runtime import Runtime
from tests.billing.invoices.conftest import issue, pdf_text
from tests.conftest import MovableClock

pytestmark = pytest.mark.usefixtures("backend")

HISTORIES = 1000
LEDGER_HISTORIES = 60  # of which through the real ledger (debit_credits), one transaction per debit
SEED = 20260515
END_OF_MARCH = datetime(2026, 3, 31, 23, 59, 59, tzinfo=UTC)
END_OF_APRIL = datetime(2026, 4, 30, 23, 59, 59, tzinfo=UTC)
CENT = Decimal("0.01")


@dataclass
class History:
    account_id: uuid.UUID
    anchor: datetime
    price: Decimal
    included: Decimal
    flex_price: Decimal
    flex_enabled: bool
    prepaid: Decimal
    debits: list[tuple[datetime, Decimal]] = field(default_factory=list)
    events: list[tuple[datetime, Decimal, list[dict[str, str]]]] = field(default_factory=list)

    def start(self, months: int) -> datetime:
        return add_months(self.anchor, months)


def _decimal(rng: random.Random, high: int, places: int) -> Decimal:
    return Decimal(rng.randint(1, high)).scaleb(-places)


def _moment(rng: random.Random, start: datetime, end: datetime) -> datetime:
    seconds = int((end - start).total_seconds())
    return start + timedelta(seconds=rng.randrange(seconds), microseconds=rng.randrange(1_000_000))


def _history(rng: random.Random) -> History:
    anchor = datetime(2026, 1, rng.randint(1, 31), rng.randint(0, 22), rng.randint(0, 59), tzinfo=UTC)
    history = History(
        account_id=uuid.uuid4(),
        anchor=anchor,
        price=Decimal(rng.randint(0, 100_000)).scaleb(-2),
        included=Decimal(rng.choice([0, 0, 10, 50, 150, rng.randint(1, 300)])),
        flex_price=_decimal(rng, 50_000, 4),
        flex_enabled=rng.random() < 0.8,
        prepaid=rng.choice([Decimal(0), Decimal(0), _decimal(rng, 5_000, 2)]),
    )
    # Debits and events in the second, third and fourth periods (the fourth's are after both invoices' windows).
    for months in (1, 2, 3):
        start, end = history.start(months), min(history.start(months + 1), END_OF_APRIL)
        for _ in range(rng.randint(0, 2)):
            history.debits.append((_moment(rng, start, end), _decimal(rng, 200_000_000, 6)))
        for _ in range(rng.randint(0, 2)):
            items = [
                {"type": rng.choice(["llm", "tool", "storage"]), "name": "x", "cost": str(_decimal(rng, 10**11, 10))}
                for _ in range(rng.randint(1, 3))
            ]
            cost = sum((Decimal(item["cost"]) for item in items), Decimal(0))
            history.events.append((_moment(rng, start, end), cost, items))
    history.debits.sort()
    return history


def _walk(history: History) -> list[tuple[datetime, Decimal, Decimal]]:
    """The accepted debits (at, amount, flex), walking them in order: included of the debit's cycle, then prepaid,
    then flex; with flex off, a debit the grants cannot cover is refused."""
    included_left: dict[datetime, Decimal] = {}
    prepaid = history.prepaid
    accepted = []
    for at, amount in history.debits:
        cycle = max(history.start(m) for m in range(5) if history.start(m) <= at)
        left = included_left.setdefault(cycle, history.included)
        from_included = min(left, amount)
        from_prepaid = min(prepaid, amount - from_included)
        uncovered = amount - from_included - from_prepaid
        if uncovered > 0 and not history.flex_enabled:
            continue  # refused: nothing written
        included_left[cycle] = left - from_included
        prepaid -= from_prepaid
        accepted.append((at, amount, uncovered))
    return accepted


def _expected_flex(history: History) -> dict[datetime, Decimal]:
    """Flex per cycle start."""
    flex: dict[datetime, Decimal] = {}
    for at, _amount, uncovered in _walk(history):
        cycle = max(history.start(m) for m in range(5) if history.start(m) <= at)
        flex[cycle] = flex.get(cycle, Decimal(0)) + uncovered
    return flex


def _expected_total(
    history: History, flex: dict[datetime, Decimal], window_start: datetime, window_end: datetime
) -> Decimal:
    metered = sum((cost for at, cost, _ in history.events if window_start <= at < window_end), Decimal(0))
    exact = history.price + flex.get(window_start, Decimal(0)) * history.flex_price + metered
    return exact.quantize(CENT, rounding=ROUND_HALF_UP)


async def _store(runtime: Runtime, histories: list[History], actor: Actor, clock: MovableClock) -> None:
    async with runtime.session_factory() as session:
        platform = BillingPlatform(name="Random Cloud", billing_enabled=True, restrictive_defaults={}, created_by="t")
        session.add(platform)
        await session.flush()
        plans, accounts, subscriptions = [], [], []
        for index, h in enumerate(histories):
            plan_id = uuid.uuid4()
            billing = {
                "price": str(h.price),
                "included_credits": str(h.included),
                "flex_credit_price": str(h.flex_price),
            }
            plans.append(
                {
                    "id": plan_id,
                    "code": f"random-{index}",
                    "name": f"Random {index}",
                    "description": "",
                    "terms": {},
                    "billing": billing,
                    "created_at": h.anchor,
                    "updated_at": h.anchor,
                }
            )
            accounts.append(
                {
                    "id": h.account_id,
                    "platform_id": platform.id,
                    "external_id": f"ws-{index}",
                    "flex_enabled": h.flex_enabled,
                    "created_at": h.anchor,
                }
            )
            subscriptions.append(
                {
                    "id": uuid.uuid4(),
                    "account_id": h.account_id,
                    "plan_id": plan_id,
                    "status": "active",
                    "anchor_at": h.anchor,
                    "trial_ends_at": None,
                    "canceled_at": None,
                    "created_at": h.anchor,
                    "updated_at": h.anchor,
                }
            )
        await session.execute(insert(Plan), plans)
        await session.execute(insert(BillingAccount), accounts)
        await session.execute(insert(Subscription), subscriptions)
        events = [
            {
                "account_id": h.account_id,
                "event_id": f"e-{i}",
                "occurred_at": at,
                "agent": None,
                "app": None,
                "line_items": items,
                "cost": cost,
                "request_digest": "0" * 64,
                "created_at": at,
            }
            for h in histories
            for i, (at, cost, items) in enumerate(h.events)
        ]
        if events:
            await session.execute(insert(UsageEvent), events)
        # Past the first LEDGER_HISTORIES, the debits are written as the ledger writes them (a debit movement with
        # its flex part), without its per-debit transaction: the ledger has tests of its own, and a thousand
        # histories through it would take minutes here.
        movements: list[dict[str, object]] = [
            {
                "account_id": h.account_id,
                "kind": "debit",
                "amount": -amount,
                "flex": uncovered,
                "grant_id": None,
                "idempotency_key": f"d-{n}",
                "request_digest": "0" * 64,
                "description": "",
                "metadata": {},
                "actor": None,
                "occurred_at": at,
            }
            for h in histories[LEDGER_HISTORIES:]
            for n, (at, amount, uncovered) in enumerate(_walk(h))
        ]
        if movements:
            await session.execute(insert(CreditMovement), movements)
        await session.commit()
    async with runtime.session_factory() as session:
        for h in histories[:LEDGER_HISTORIES]:
            if h.prepaid:
                clock.now = h.anchor + timedelta(days=1)
                await credits.grant_credits(
                    session,
                    state=runtime.billing,
                    actor=actor,
                    account_id=h.account_id,
                    kind=CreditKind.PREPAID,
                    amount=h.prepaid,
                    idempotency_key="prepaid",
                    clock=clock,
                )
            for n, (at, amount) in enumerate(h.debits):
                clock.now = at
                with contextlib.suppress(CreditsExhausted):  # the walk predicts the refusal too
                    await credits.debit_credits(
                        session,
                        state=runtime.billing,
                        account_id=h.account_id,
                        amount=amount,
                        idempotency_key=f"d-{n}",
                        clock=clock,
                    )


async def test_invoice_totals_of_random_histories_equal_an_independent_recomputation(
    runtime: Runtime, clock: MovableClock, actor: Actor
) -> None:
    rng = random.Random(SEED)  # noqa: S311 - reproducible test data, not secrets
    histories = [_history(rng) for _ in range(HISTORIES)]
    await _store(runtime, histories, actor, clock)

    assert await issue(runtime, END_OF_MARCH) == HISTORIES
    assert await issue(runtime, END_OF_APRIL) == HISTORIES
    assert await issue(runtime, END_OF_APRIL) == 0

    async with runtime.session_factory() as session:
        invoices = {(i.account_id, i.period_start): i for i in await session.scalars(select(Invoice))}
        lines: dict[uuid.UUID, list[InvoiceLine]] = {}
        for line in await session.scalars(select(InvoiceLine)):
            lines.setdefault(line.invoice_id, []).append(line)
    numbers = sorted(int(i.number.removeprefix("INV-")) for i in invoices.values())
    assert numbers == list(range(1, 2 * HISTORIES + 1))  # gapless

    mismatches = []
    for h in histories:
        flex = _expected_flex(h)
        for months in (2, 3):
            invoice = invoices[(h.account_id, h.start(months))]
            assert (invoice.arrears_start, invoice.arrears_end) == (h.start(months - 1), h.start(months))
            expected = _expected_total(h, flex, h.start(months - 1), h.start(months))
            assert sum((line.amount for line in lines.get(invoice.id, [])), Decimal(0)) == invoice.subtotal
            if invoice.total != expected:
                mismatches.append((invoice.number, invoice.total, expected))
    assert mismatches == []

    sample = random.Random(SEED).sample(  # noqa: S311 - a reproducible sample
        sorted(invoices.values(), key=lambda i: i.number), 25
    )
    for invoice in sample:
        assert f"Total {invoice.total} USD" in await pdf_text(runtime, invoice.number, END_OF_APRIL)
