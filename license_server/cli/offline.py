"""``offline``: the air-gapped file exchange, and ``edge``: the install's local license server.

Install side: ``offline request``, ``offline usage-report``, ``edge``. Vendor side (needs the server's database and
keys): ``offline respond``, ``offline renew``, ``offline import-usage``.
"""

from __future__ import annotations

import asyncio
import socket
from datetime import timedelta
from pathlib import Path

import click

from license_server.cli.common import emit, fail, json_option, listening_socket, serve_on, timestamp_text
from license_server.clock import utcnow


def _edge_data_dir() -> Path:
    from license_server.config import Settings

    return Settings().edge_data_dir


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=_edge_data_dir,
    show_default="edge-data, or $LICENSE_SERVER_EDGE_DATA_DIR",
    help="The install's state: its key pair and the edge's local database.",
)
fingerprint_option = click.option(
    "--fingerprint",
    default="auto",
    show_default=True,
    help="This machine's fingerprint: 'auto' (hashed machine id, see docs/offline.md) or your own value.",
)


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}", "unreadable_input")


@click.group()
def offline() -> None:
    """Air-gapped installs: activation request -> license file -> usage reports back."""


# -- install side ---------------------------------------------------------------------------------------------------
@offline.command("request")
@click.option("--license-key", required=True, help="The license key the vendor gave you (LSK-...).")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True, help="Request file to write.")
@data_dir_option
@fingerprint_option
@click.option("--hostname", default=None, help="Shown to the vendor; default: this machine's hostname.")
@click.option("--product-version", default=None, help="Shown to the vendor.")
@json_option
def request(
    license_key: str,
    out: Path,
    data_dir: Path,
    fingerprint: str,
    hostname: str | None,
    product_version: str | None,
    as_json: bool,
) -> None:
    """Write an activation request to carry to the vendor (makes this install's key pair on first use)."""
    from license_server.offline.files import build_activation_request
    from license_server.offline.install import InstallKeyError, load_or_create_install_key
    from license_server.verifier.fingerprint import resolve_fingerprint

    try:
        key = load_or_create_install_key(data_dir)
    except InstallKeyError as exc:
        fail(str(exc), "install_key_unavailable", as_json=as_json)
    text = build_activation_request(
        install_key=key,
        license_key=license_key.strip(),
        fingerprint=resolve_fingerprint(fingerprint),
        hostname=hostname or socket.gethostname(),
        product_version=product_version,
        now=utcnow(),
    )
    _write(out, text)
    human = f"wrote {out}: take it to the vendor; it contains your license key, so treat it like one"
    emit({"file": str(out)}, as_json=as_json, human=human)


@offline.command("usage-report")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True, help="Report file to write.")
@data_dir_option
@click.option("--seq", type=int, default=None, help="Write an already exported report again (it was lost).")
@json_option
def usage_report(out: Path, data_dir: Path, seq: int | None, as_json: bool) -> None:
    """Export the usage recorded since the last report, signed and chained to it, for the vendor to import."""
    from license_server.edge import service
    from license_server.edge.store import create_edge_engine, edge_session_factory, prepare
    from license_server.errors import LicenseServerError
    from license_server.offline.install import InstallKeyError

    async def export() -> tuple[bytes, int, int]:
        engine = create_edge_engine(data_dir)
        try:
            await prepare(engine)
            async with edge_session_factory(engine)() as session:
                if seq is not None:
                    return await service.stored_usage_report(session, seq=seq), seq, -1
                return await service.export_usage_report(session, data_dir=data_dir, now=utcnow())
        finally:
            await engine.dispose()

    try:
        text, number, count = asyncio.run(export())
    except InstallKeyError as exc:
        fail(str(exc), "install_key_unavailable", as_json=as_json)
    except LicenseServerError as exc:
        fail(exc.detail, exc.code, as_json=as_json)
    _write(out, text)
    what = "again" if count < 0 else f"with {count} measurement(s)"
    payload = {"file": str(out), "seq": number, "measurements": None if count < 0 else count}
    emit(payload, as_json=as_json, human=f"wrote {out}: usage report {number} {what}")


# -- vendor side ----------------------------------------------------------------------------------------------------
@offline.command("respond")
@click.argument("request_file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True, help="License file to write.")
@json_option
def respond(request_file: Path, out: Path, as_json: bool) -> None:
    """Answer an activation request: activate (seat limits apply) and write the bound license file."""
    from license_server.auth.tokens import cli_actor
    from license_server.cli.common import run_with_session
    from license_server.offline import service

    raw = _read(request_file)
    issued = run_with_session(
        lambda runtime, session: service.respond(
            session, runtime=runtime, actor=cli_actor(), request=raw, clock=runtime.clock
        ),
        as_json=as_json,
    )
    _write(out, issued.text.encode("ascii"))
    _report_file(out, issued, as_json)


@offline.command("renew")
@click.argument("license_file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True, help="New license file.")
@json_option
def renew(license_file: Path, out: Path, as_json: bool) -> None:
    """A new license file for the same install (the license's current terms), from its earlier file."""
    from license_server.auth.tokens import cli_actor
    from license_server.cli.common import run_with_session
    from license_server.offline import service

    raw = _read(license_file)
    issued = run_with_session(
        lambda runtime, session: service.renew(
            session, runtime=runtime, actor=cli_actor(), license_file=raw, clock=runtime.clock
        ),
        as_json=as_json,
    )
    _write(out, issued.text.encode("ascii"))
    _report_file(out, issued, as_json)


def _report_file(out: Path, issued: object, as_json: bool) -> None:
    from license_server.offline.service import IssuedLicenseFile

    assert isinstance(issued, IssuedLicenseFile)
    payload = {
        "file": str(out),
        "license_id": str(issued.license_id),
        "activation_id": str(issued.activation_id),
        "new_activation": issued.created,
        "expires_at": timestamp_text(issued.expires_at),
    }
    emit(payload, as_json=as_json)


@offline.command("import-usage")
@click.argument("report_file", type=click.Path(path_type=Path, dir_okay=False))
@json_option
def import_usage(report_file: Path, as_json: bool) -> None:
    """Import an install's usage report (refused if changed, out of order, with a gap before it, or if another
    report already took its place in the chain). The same file again answers what its import answered."""
    from license_server.auth.tokens import cli_actor
    from license_server.cli.common import run_with_session
    from license_server.offline import service

    raw = _read(report_file)
    imported = run_with_session(
        lambda runtime, session: service.import_usage(
            session, runtime=runtime, actor=cli_actor(), report=raw, clock=runtime.clock
        ),
        as_json=as_json,
    )
    usage = imported.usage
    emit(
        {
            "license_id": str(imported.license_id),
            "activation_id": str(imported.activation_id),
            "seq": imported.seq,
            "measurements": imported.measurements,
            "usage": {
                "workspaces": usage.workspaces,
                "members_per_workspace": usage.members_per_workspace,
                "licensed_seats": usage.licensed_seats,
            },
            "over_limit": imported.over_limits,
        },
        as_json=as_json,
    )


# -- the edge -------------------------------------------------------------------------------------------------------
@click.command()
@click.option("--license-file", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option("--root-key", type=click.Path(path_type=Path, dir_okay=False), required=True, help="root.pub (PEM).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8100, show_default=True)
@data_dir_option
@fingerprint_option
@click.option(
    "--clock-tolerance-seconds",
    type=int,
    default=600,
    show_default=True,
    help="How far the clock may go back before the status is lost (CLOCK_ROLLBACK).",
)
@click.option(
    "--revocations",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The vendor's root-signed list of retired keys (re-read when replaced; an older list is refused).",
)
def edge(
    license_file: Path,
    root_key: Path,
    revocations: Path | None,
    host: str,
    port: int,
    data_dir: Path,
    fingerprint: str,
    clock_tolerance_seconds: int,
) -> None:
    """Serve the deployment API locally from a verified license file, with no vendor database.

    Set LICENSE_SERVER_EDGE_TOKEN to require it as a bearer token on /v1. A renewed file written over the old one
    is picked up without a restart.
    """
    from license_server.config import Settings
    from license_server.edge.app import create_edge_app
    from license_server.edge.runtime import EdgeRuntime
    from license_server.logs import configure_logging
    from license_server.offline.files import install_key_id, verify_license_file
    from license_server.offline.install import InstallKeyError, load_install_key
    from license_server.verifier import VerificationError, Verifier, load_root_public_key
    from license_server.verifier.fingerprint import resolve_fingerprint

    config = Settings()
    configure_logging(config.log_level, config.log_format)
    sock = listening_socket(host, port)
    machine = resolve_fingerprint(fingerprint)
    try:
        runtime = EdgeRuntime(
            license_path=license_file,
            verifier=Verifier(load_root_public_key(root_key)),
            data_dir=data_dir,
            fingerprint=machine,
            clock_tolerance=timedelta(seconds=clock_tolerance_seconds),
            token=config.edge_token.get_secret_value() if config.edge_token else None,
            revocations_path=revocations,
        )
        if runtime.revocations_error is not None:
            fail(runtime.revocations_error, "revocations_refused")
        install_key = install_key_id(load_install_key(data_dir).public_key())
        # Refuse to start on a file that is not this install's (or whose key is retired), before anything listens.
        verify_license_file(
            license_file.read_bytes(), runtime.verifier, fingerprint=machine, install_key=install_key, check_dates=False
        )
    except (OSError, ValueError, InstallKeyError) as exc:
        fail(str(exc), "unreadable_input")
    except VerificationError as exc:
        fail(exc.detail, exc.reason.value)
    serve_on(sock, create_edge_app(runtime, settings=config), log_level=config.log_level.lower())
