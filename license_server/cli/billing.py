"""``billing``: the hosted half — plans, platforms, accounts, subscriptions, overrides, flex, usage, credits.

Subgroups load on first use, like the top-level commands: each lives in its own module and is named in
``SUBGROUPS``, so adding one (e.g. ``credits``) is one line here and one new module.
"""

from __future__ import annotations

import importlib

import click

# subgroup name -> "module:attribute"
SUBGROUPS: dict[str, str] = {"credits": "license_server.cli.billing_credits:credits"}


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
