"""The ``license-server`` entry point. Command groups load on first use, so ``verify`` stays fast and light."""

from __future__ import annotations

import importlib

import click

from license_server import __version__

# command name -> "module:attribute"; only the module of the command being run is imported.
COMMANDS = {
    "init": "license_server.cli.setup:init",
    "serve": "license_server.cli.setup:serve",
    "scheduler": "license_server.cli.setup:scheduler",
    "db": "license_server.cli.setup:db",
    "config": "license_server.cli.setup:config",
    "keys": "license_server.cli.keys:keys",
    "customers": "license_server.cli.licenses:customers",
    "plans": "license_server.cli.licenses:plans",
    "licenses": "license_server.cli.licenses:licenses",
    "tokens": "license_server.cli.tokens:tokens",
    "verify": "license_server.cli.verify:verify",
    "offline": "license_server.cli.offline:offline",
    "edge": "license_server.cli.edge:edge",
    "billing": "license_server.cli.billing:billing",
    "staff": "license_server.cli.staff:staff",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attribute = target.split(":")
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command

    def invoke(self, ctx: click.Context) -> object:
        """Domain errors raised while parsing a command's input end the command cleanly, never with a traceback."""
        from license_server.errors import LicenseServerError

        try:
            return super().invoke(ctx)
        except LicenseServerError as exc:
            from license_server.cli.common import fail

            fields = "".join(f" ({e.field}: {e.message})" for e in exc.field_errors if e.message not in exc.detail)
            fail(exc.detail + fields, exc.code)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="license-server")
def cli() -> None:
    """License Server: issue, sign and verify enterprise licenses.

    Configuration comes from LICENSE_SERVER_* environment variables (see README).
    """
