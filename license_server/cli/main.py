"""The ``license-server`` entry point."""

from __future__ import annotations

import click

from license_server import __version__
from license_server.cli.common import fail
from license_server.cli.keys import keys
from license_server.cli.licenses import customers, licenses, plans
from license_server.cli.setup import db, init, serve
from license_server.cli.tokens import tokens
from license_server.cli.verify import verify
from license_server.errors import LicenseServerError


class _Group(click.Group):
    """Domain errors raised while parsing a command's input end the command cleanly, never with a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except LicenseServerError as exc:
            fields = "".join(f" ({e.field}: {e.message})" for e in exc.field_errors if e.message not in exc.detail)
            fail(exc.detail + fields, exc.code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="license-server")
def cli() -> None:
    """License Server: issue, sign and verify enterprise licenses.

    Configuration comes from LICENSE_SERVER_* environment variables (see README).
    """


for command in (init, serve, db, keys, customers, plans, licenses, tokens, verify):
    cli.add_command(command)
