"""The ``license-server`` entry point. Command groups load on first use, so ``verify`` stays fast and light."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

import click

from license_server import __version__

JSON_REQUESTED = "license_server.json_requested"

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
    "activations": "license_server.cli.activations:activations",
    "webhooks": "license_server.cli.events:webhooks",
    "events": "license_server.cli.events:events",
    "audit": "license_server.cli.audit:audit",
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

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Usage errors honour ``--json``: click's own (a missing argument, an unknown option, a bad value) answer
        the one JSON error shape on stdout with exit 2 when the command line asks for JSON, as every error does.

        Without ``--json`` click prints its usual usage text; ``--json`` is looked for anywhere on the line because
        a usage error can come before the option is parsed (e.g. a missing argument ahead of it).
        """
        argv = list(sys.argv[1:] if args is None else args)
        if "--json" not in argv:
            return super().main(argv, prog_name, complete_var, standalone_mode, **extra)
        from license_server.cli.common import fail
        from license_server.errors import FieldError

        try:
            result = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            param = exc.param if isinstance(exc, click.BadParameter) else None
            # the field as the user typed it: "--customer" for an option, "LICENSE_ID" for an argument
            name = (param.opts[0] if isinstance(param, click.Option) else param.human_readable_name) if param else None
            fields = [FieldError(name, exc.format_message())] if name else []
            fail(exc.format_message(), "usage_error", as_json=True, exit_code=2, fields=fields)
        except click.Abort:
            fail("aborted", "aborted", as_json=True, exit_code=1)
        except click.ClickException as exc:  # e.g. a file argument that does not exist is a usage error already
            fail(exc.format_message(), "error", as_json=True, exit_code=exc.exit_code)
        if not standalone_mode:
            return result
        # standalone: --help and --version return their exit code instead of exiting; a command returns None
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx: click.Context) -> object:
        """Domain errors raised while parsing a command's input end the command cleanly, never with a traceback."""
        from license_server.errors import LicenseServerError

        try:
            return super().invoke(ctx)
        except LicenseServerError as exc:
            from license_server.cli.common import report_error

            report_error(exc, as_json=ctx.meta.get(JSON_REQUESTED, False))

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        """Remember whether the line asks for JSON before click hands the arguments on (the meta is shared with
        every subcommand's context)."""
        requested = "--json" in args
        ctx = super().make_context(info_name, args, parent, **extra)
        ctx.meta[JSON_REQUESTED] = requested
        return ctx


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="license-server")
def cli() -> None:
    """License Server: issue, sign and verify enterprise licenses.

    Configuration comes from LICENSE_SERVER_* environment variables (see README).
    """
