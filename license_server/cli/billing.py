"""``billing``: the hosted half — plans, platforms, accounts, subscriptions, overrides, flex, usage, credits.

The core subgroups are defined here; others (``credits``) live in their own modules, named in ``SUBGROUPS`` and
loaded on first use, so adding one is one line here and one new module.
"""

from __future__ import annotations

import importlib
import json
import re
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.tokens import cli_actor
from license_server.billing.accounts import service as accounts
from license_server.billing.accounts.models import SubscriptionStatus
from license_server.billing.accounts.snapshots import SubscriptionView
from license_server.billing.clocks.service import account_clock, frozen_now_of
from license_server.billing.controllers import subscription_out
from license_server.billing.plans import service as plans_service
from license_server.billing.subscriptions import service as lifecycle
from license_server.billing.subscriptions.controllers import subscription_detail
from license_server.billing.usage import service as usage
from license_server.cli.common import (
    emit,
    emit_list,
    json_option,
    parse_model,
    parse_timestamp,
    run_with_session,
    timestamp_text,
)
from license_server.errors import ValidationFailed
from license_server.runtime import Runtime

# subgroup name -> "module:attribute"
SUBGROUPS: dict[str, str] = {
    "credits": "license_server.cli.billing_credits:credits",
    "dify-sync": "license_server.cli.billing_dify:dify_sync",
    "invoices": "license_server.cli.billing_invoices:invoices_group",
    "payments": "license_server.cli.billing_invoices:payments_group",
    "clocks": "license_server.cli.billing_clocks:clocks",
}


class _LazyBillingGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*SUBGROUPS, *super().list_commands(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = SUBGROUPS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module, attribute = target.split(":")
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command


@click.group(cls=_LazyBillingGroup)
def billing() -> None:
    """Hosted billing: plans with quotas, platforms, accounts, subscriptions, usage and credits."""


# -- the core subgroups (credits lives in its own module, named in SUBGROUPS) ---------------------------------------
platform_option = click.option("--platform", "platform_id", type=click.UUID, required=True, help="Platform id.")
account_option = click.option("--account", "external_id", required=True, help="The account's external id.")


def _platform_payload(platform: Any) -> dict[str, Any]:
    return {
        "id": str(platform.id),
        "name": platform.name,
        "billing_enabled": platform.billing_enabled,
        "default_plan_id": str(platform.default_plan_id) if platform.default_plan_id else None,
        "restrictive_defaults": platform.restrictive_defaults,
    }


def _subscription_payload(view: SubscriptionView, now: datetime) -> dict[str, Any]:
    """The admin API's subscription body (one serialisation for both)."""
    return subscription_out(view, now).model_dump(mode="json")


# -- plans ---------------------------------------------------------------------------------------------------------
@billing.group("plans")
def plans_group() -> None:
    """Plans' billing terms (price, quotas, features, credits, rate limits)."""


@plans_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
def import_plans(file: Path, as_json: bool) -> None:
    """Create or update the plans of a catalogue file (see examples/plans/); idempotent."""
    catalogue = parse_model(plans_service.Catalogue, file.read_text(), "catalogue")

    async def work(runtime: Runtime, session: AsyncSession) -> plans_service.ImportResult:
        return await plans_service.import_catalogue(session, actor=cli_actor(), catalogue=catalogue)

    result = run_with_session(work, as_json=as_json)
    emit(
        {"created": result.created, "updated": result.updated, "plans": [p.code for p in result.plans]},
        as_json=as_json,
        human=f"created: {', '.join(result.created) or '-'}\nupdated: {', '.join(result.updated) or '-'}",
    )


@plans_group.command("list")
@json_option
def list_plans(as_json: bool) -> None:
    """Plans with their billing terms."""

    async def work(runtime: Runtime, session: AsyncSession) -> list[dict[str, Any]]:
        return [
            {"code": p.code, "name": p.name, "billing": p.billing}
            for p in await plans_service.list_billing_plans(session)
        ]

    def line(row: dict[str, Any]) -> str:
        billing_terms = row["billing"]
        price = (
            f"{billing_terms.get('price', '-')} {billing_terms.get('currency', '')}/{billing_terms.get('interval', '')}"
        )
        return f"{row['code']:24} {price if billing_terms else '(licenses only)'}  {row['name']}"

    emit_list(run_with_session(work, as_json=as_json), as_json=as_json, things="plans", row=line)


# -- platforms -----------------------------------------------------------------------------------------------------
@billing.group("platforms")
def platforms_group() -> None:
    """Hosted platforms and their secrets."""


@platforms_group.command("create")
@click.option("--name", required=True)
@click.option("--default-plan", default=None, help="Plan code new accounts start on (default: restrictive defaults).")
@click.option("--billing-disabled", is_flag=True, help="Every limit unlimited (self-hosted style).")
@json_option
def create_platform(name: str, default_plan: str | None, billing_disabled: bool, as_json: bool) -> None:
    """Register a platform; its secret is printed once."""

    async def work(runtime: Runtime, session: AsyncSession) -> accounts.CreatedPlatform:
        return await accounts.create_platform(
            session,
            actor=cli_actor(),
            hasher=runtime.hasher,
            name=name,
            default_plan=default_plan,
            billing_enabled=not billing_disabled,
        )

    created = run_with_session(work, as_json=as_json)
    payload = {**_platform_payload(created.platform), "secret": created.secret, "secret_id": str(created.secret_id)}
    emit(payload, as_json=as_json, human=f"platform: {created.platform.id}\nsecret (shown once): {created.secret}")


@platforms_group.command("list")
@json_option
def list_platforms(as_json: bool) -> None:
    async def work(runtime: Runtime, session: AsyncSession) -> list[dict[str, Any]]:
        return [_platform_payload(p) for p in await accounts.list_platforms(session)]

    emit_list(
        run_with_session(work, as_json=as_json),
        as_json=as_json,
        things="platforms",
        row=lambda row: f"{row['id']}  {'on ' if row['billing_enabled'] else 'off'}  {row['name']}",
    )


@platforms_group.command("update")
@click.argument("platform_id", type=click.UUID)
@click.option("--name", default=None)
@click.option("--default-plan", default=None, help="Plan code; '' clears it.")
@click.option("--billing/--no-billing", "billing_enabled", default=None, help="Switch billing on or off.")
@click.option("--restrictive-defaults", default=None, help="JSON, e.g. '{\"app.max_total_count\": 1}'.")
@json_option
def update_platform(
    platform_id: uuid.UUID,
    name: str | None,
    default_plan: str | None,
    billing_enabled: bool | None,
    restrictive_defaults: str | None,
    as_json: bool,
) -> None:
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = name
    if default_plan is not None:
        changes["default_plan"] = default_plan or None
    if billing_enabled is not None:
        changes["billing_enabled"] = billing_enabled
    if restrictive_defaults is not None:
        from license_server.billing.schemas import PlatformUpdate

        changes["restrictive_defaults"] = parse_model(
            PlatformUpdate, json.dumps({"restrictive_defaults": json.loads(restrictive_defaults)}), "platform"
        ).restrictive_defaults

    async def work(runtime: Runtime, session: AsyncSession) -> dict[str, Any]:
        platform = await accounts.update_platform(session, actor=cli_actor(), platform_id=platform_id, changes=changes)
        return _platform_payload(platform)

    emit(run_with_session(work, as_json=as_json), as_json=as_json)


@platforms_group.command("add-secret")
@click.argument("platform_id", type=click.UUID)
@json_option
def add_secret(platform_id: uuid.UUID, as_json: bool) -> None:
    """A new secret beside the live ones (rotate: add, deploy it, then revoke the old one)."""

    async def work(runtime: Runtime, session: AsyncSession) -> tuple[str, Any]:
        return await accounts.add_platform_secret(
            session, actor=cli_actor(), hasher=runtime.hasher, platform_id=platform_id
        )

    secret, row = run_with_session(work, as_json=as_json)
    emit(
        {"secret": secret, "secret_id": str(row.id)},
        as_json=as_json,
        human=f"secret (shown once): {secret}\nid: {row.id}",
    )


@platforms_group.command("revoke-secret")
@click.argument("platform_id", type=click.UUID)
@click.argument("secret_id", type=click.UUID)
@json_option
def revoke_secret(platform_id: uuid.UUID, secret_id: uuid.UUID, as_json: bool) -> None:
    async def work(runtime: Runtime, session: AsyncSession) -> None:
        await accounts.revoke_platform_secret(session, actor=cli_actor(), platform_id=platform_id, secret_id=secret_id)

    run_with_session(work, as_json=as_json)
    emit({"secret_id": str(secret_id), "revoked": True}, as_json=as_json, human=f"revoked {secret_id}")


# -- accounts ------------------------------------------------------------------------------------------------------
@billing.group("accounts")
def accounts_group() -> None:
    """Billing accounts (a platform's workspaces / organizations)."""


@accounts_group.command("list")
@platform_option
@click.option("--limit", type=click.IntRange(1, 500), default=100)
@json_option
def list_accounts(platform_id: uuid.UUID, limit: int, as_json: bool) -> None:
    async def work(runtime: Runtime, session: AsyncSession) -> list[dict[str, Any]]:
        rows = await accounts.list_accounts(session, platform_id=platform_id, limit=limit, offset=0)
        return [{"id": str(a.id), "external_id": a.external_id, "flex_enabled": a.flex_enabled} for a in rows]

    emit_list(
        run_with_session(work, as_json=as_json),
        as_json=as_json,
        things="accounts",
        row=lambda row: f"{row['external_id']:40} flex {'on' if row['flex_enabled'] else 'off'}",
        limit=limit,
    )


@accounts_group.command("show")
@platform_option
@account_option
@json_option
def show_account(platform_id: uuid.UUID, external_id: str, as_json: bool) -> None:
    """Status, subscriptions and the limits report of one account."""

    async def work(runtime: Runtime, session: AsyncSession) -> dict[str, Any]:
        platform = await accounts.get_platform(session, platform_id)
        account = await accounts.get_account(session, platform_id, external_id)
        now = (await account_clock(session, account.id, runtime.clock))()
        snapshot = await accounts.load_snapshot(
            session, accounts.platform_snapshot(platform), account, test_now=await frozen_now_of(session, account.id)
        )
        return {
            "external_id": external_id,
            "status": snapshot.billing_status,
            "flex_enabled": account.flex_enabled,
            "subscriptions": [_subscription_payload(v, now) for v in snapshot.subscriptions],
            "limits": await usage.limits_report(session, snapshot, now),
        }

    payload = run_with_session(work, as_json=as_json)
    if as_json:
        emit(payload, as_json=True)
        return
    click.echo(f"{external_id}: {payload['status']}  plan {payload['limits']['plan'] or '-'}")
    for entry in payload["limits"]["limits"]:
        click.echo(f"  {entry['key']:48} {entry['group']:8} {entry['used']} / {entry.get('limit', 'unlimited')}")


# -- subscriptions -------------------------------------------------------------------------------------------------
@billing.group("subscriptions")
def subscriptions_group() -> None:
    """Accounts on plans."""


@subscriptions_group.command("create")
@platform_option
@account_option
@click.option("--plan", required=True, help="Plan code or id.")
@click.option("--trial-days", type=click.IntRange(0, 365), default=None, help="Default: the plan's trial days.")
@click.option("--anchor", default=None, help="Period anchor (RFC 3339 or YYYY-MM-DD); default: now.")
@click.option(
    "--test-clock", "test_clock_id", type=click.UUID, default=None, help="Attach the account to this test clock first."
)
@json_option
def create_subscription(
    platform_id: uuid.UUID,
    external_id: str,
    plan: str,
    trial_days: int | None,
    anchor: str | None,
    test_clock_id: uuid.UUID | None,
    as_json: bool,
) -> None:
    anchor_at = parse_timestamp(anchor, "anchor")

    async def work(runtime: Runtime, session: AsyncSession) -> dict[str, Any]:
        view = await accounts.create_subscription(
            session,
            actor=cli_actor(),
            platform_id=platform_id,
            external_id=external_id,
            plan=plan,
            trial_days=trial_days,
            anchor=anchor_at,
            test_clock_id=test_clock_id,
            clock=runtime.clock,
        )
        return _subscription_payload(
            view, (await account_clock(session, view.subscription.account_id, runtime.clock))()
        )

    emit(run_with_session(work, as_json=as_json), as_json=as_json)


@subscriptions_group.command("list")
@platform_option
@account_option
@click.option("--status", type=click.Choice([s.value for s in SubscriptionStatus]), default=None)
@json_option
def list_subscriptions(platform_id: uuid.UUID, external_id: str, status: str | None, as_json: bool) -> None:
    async def work(runtime: Runtime, session: AsyncSession) -> list[dict[str, Any]]:
        account = await accounts.get_account(session, platform_id, external_id)
        views = await accounts.list_subscriptions(session, account_id=account.id, status=status)
        now = (await account_clock(session, account.id, runtime.clock))()
        return [_subscription_payload(v, now) for v in views]

    emit_list(
        run_with_session(work, as_json=as_json),
        as_json=as_json,
        things="subscriptions",
        row=lambda row: f"{row['id']}  {row['status']:9} {row['plan']}",
    )


subscription_argument = click.argument("subscription_id", type=click.UUID)


def _run_verb(verb: str, **kwargs: Any) -> Any:
    """Run one lifecycle verb as the CLI's actor and answer the subscription as the admin API does."""

    async def work(runtime: Runtime, session: AsyncSession) -> dict[str, Any]:
        action = getattr(lifecycle, verb)
        state = await action(session, actor=cli_actor(), clock=runtime.clock, state=runtime.billing, **kwargs)
        return (await subscription_detail(session, state)).model_dump(mode="json")

    return work


def _emit_subscription(payload: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit(payload, as_json=True)
        return
    pending = f"  -> {payload['pending_plan']} at {payload['current_period_end']}" if payload["pending_plan"] else ""
    trial = f"  trial: {payload['trial_days_remaining']} days left" if payload["trial_days_remaining"] else ""
    click.echo(f"{payload['id']}  {payload['status']:9} {payload['plan']}{pending}{trial}")


@subscriptions_group.command("show")
@platform_option
@subscription_argument
@json_option
def show_subscription(platform_id: uuid.UUID, subscription_id: uuid.UUID, as_json: bool) -> None:
    """Status (with trial days left and its reason), pending plan and plan changes."""

    async def work(runtime: Runtime, session: AsyncSession) -> dict[str, Any]:
        state = await lifecycle.get_subscription(
            session, platform_id=platform_id, subscription_id=subscription_id, clock=runtime.clock
        )
        return (await subscription_detail(session, state)).model_dump(mode="json")

    _emit_subscription(run_with_session(work, as_json=as_json), as_json)


@subscriptions_group.command("change-plan")
@platform_option
@subscription_argument
@click.option("--plan", required=True, help="Plan code or id: an upgrade applies at once, a downgrade at the end.")
@json_option
def change_plan(platform_id: uuid.UUID, subscription_id: uuid.UUID, plan: str, as_json: bool) -> None:
    """Upgrade at once (prorated) or schedule a downgrade for the period end."""
    work = _run_verb("change_plan", platform_id=platform_id, subscription_id=subscription_id, plan=plan)
    _emit_subscription(run_with_session(work, as_json=as_json), as_json)


@subscriptions_group.command("cancel")
@platform_option
@subscription_argument
@click.option("--now", "at_once", is_flag=True, help="Cancel at once instead of at the period end.")
@json_option
def cancel_subscription(platform_id: uuid.UUID, subscription_id: uuid.UUID, at_once: bool, as_json: bool) -> None:
    """Cancel at the period end (or at once with --now)."""
    work = _run_verb("cancel", platform_id=platform_id, subscription_id=subscription_id, at_period_end=not at_once)
    _emit_subscription(run_with_session(work, as_json=as_json), as_json)


def _simple_verb(name: str, doc: str) -> None:
    @subscriptions_group.command(name, help=doc)
    @platform_option
    @subscription_argument
    @json_option
    def command(platform_id: uuid.UUID, subscription_id: uuid.UUID, as_json: bool) -> None:
        work = _run_verb(name, platform_id=platform_id, subscription_id=subscription_id)
        _emit_subscription(run_with_session(work, as_json=as_json), as_json)


_simple_verb("pause", "Pause: consume and reserve are refused (subscription_paused) until resumed.")
_simple_verb("resume", "Undo a pause.")
_simple_verb("reactivate", "Undo a cancellation (a canceled subscription starts a new term now).")


# -- overrides and flex --------------------------------------------------------------------------------------------
@billing.group("overrides")
def overrides_group() -> None:
    """Per-account limits set by staff; they win over every plan."""


def _limit_value(raw: str) -> int | None:
    if raw == "unlimited":
        return None
    if not raw.isdigit() or len(raw) > 16:
        raise ValidationFailed("--limit must be a whole number >= 0 or 'unlimited'", field="limit")
    return int(raw)


@overrides_group.command("set")
@platform_option
@account_option
@click.option("--key", required=True)
@click.option("--limit", "raw_limit", required=True, help="A number, or 'unlimited'.")
@json_option
def set_override(platform_id: uuid.UUID, external_id: str, key: str, raw_limit: str, as_json: bool) -> None:
    from license_server.billing.schemas import OverrideIn

    limit = _limit_value(raw_limit)
    parse_model(OverrideIn, json.dumps({"limit": limit}), "override")
    if not re.match(r"^[a-z][a-z0-9_.:-]{0,99}$", key):
        raise ValidationFailed("--key must match ^[a-z][a-z0-9_.:-]{0,99}$", field="key")

    async def work(runtime: Runtime, session: AsyncSession) -> None:
        await accounts.set_override(
            session, actor=cli_actor(), platform_id=platform_id, external_id=external_id, key=key, limit=limit
        )

    run_with_session(work, as_json=as_json)
    emit({"key": key, "limit": limit}, as_json=as_json, human=f"{external_id}: {key} = {raw_limit}")


@overrides_group.command("clear")
@platform_option
@account_option
@click.option("--key", required=True)
@json_option
def clear_override(platform_id: uuid.UUID, external_id: str, key: str, as_json: bool) -> None:
    async def work(runtime: Runtime, session: AsyncSession) -> bool:
        return await accounts.clear_override(
            session, actor=cli_actor(), platform_id=platform_id, external_id=external_id, key=key
        )

    removed = run_with_session(work, as_json=as_json)
    emit({"key": key, "removed": removed}, as_json=as_json)


@billing.group("flex")
def flex_group() -> None:
    """Flex credits (a negative balance billed in arrears), per account; off by default."""


def _set_flex(platform_id: uuid.UUID, external_id: str, enabled: bool, as_json: bool) -> None:
    async def work(runtime: Runtime, session: AsyncSession) -> None:
        await accounts.set_flex(
            session, actor=cli_actor(), platform_id=platform_id, external_id=external_id, enabled=enabled
        )

    run_with_session(work, as_json=as_json)
    emit(
        {"external_id": external_id, "flex_enabled": enabled},
        as_json=as_json,
        human=f"{external_id}: flex {'on' if enabled else 'off'}",
    )


@flex_group.command("enable")
@platform_option
@account_option
@json_option
def enable_flex(platform_id: uuid.UUID, external_id: str, as_json: bool) -> None:
    _set_flex(platform_id, external_id, True, as_json)


@flex_group.command("disable")
@platform_option
@account_option
@json_option
def disable_flex(platform_id: uuid.UUID, external_id: str, as_json: bool) -> None:
    _set_flex(platform_id, external_id, False, as_json)


@billing.command("usage")
@platform_option
@account_option
@click.option("--limit", type=click.IntRange(1, 500), default=50)
@json_option
def usage_history(platform_id: uuid.UUID, external_id: str, limit: int, as_json: bool) -> None:
    """The account's accepted usage writes, newest first."""

    async def work(runtime: Runtime, session: AsyncSession) -> list[dict[str, Any]]:
        account = await accounts.get_account(session, platform_id, external_id)
        rows = await usage.usage_history(session, account.id, limit=limit, offset=0)
        return [
            {
                "history_id": str(r.id),
                "key": r.key,
                "operation": r.operation,
                "amount": r.amount,
                "refunded": r.refunded_at is not None,
                "created_at": timestamp_text(r.created_at),
            }
            for r in rows
        ]

    emit_list(
        run_with_session(work, as_json=as_json),
        as_json=as_json,
        things="usage writes",
        row=lambda row: f"{row['created_at']}  {row['operation']:16} {row['key']:40} {row['amount']}",
        limit=limit,
    )
