"""``verify``: check a license document offline against the pinned root public key."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from license_server.offline.files import ARMOR_BEGIN, verify_license_file
from license_server.verifier import VerificationError, Verifier, load_root_public_key
from license_server.verifier.fingerprint import resolve_fingerprint


@click.command()
@click.argument("document_file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--root-key",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="The vendor's root public key (PEM), e.g. keys/root.pub.",
)
@click.option(
    "--revocations",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Root-signed list of retired keys (revocations.jws from `keys export-public`).",
)
@click.option(
    "--fingerprint",
    default=None,
    help="For a license file: the machine it must be bound to, 'auto' (this machine's default fingerprint) or a "
    "value. Without it the binding is shown but not checked.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def verify(
    document_file: Path, root_key: Path, revocations: Path | None, fingerprint: str | None, as_json: bool
) -> None:
    """Exit 0 and print the claims if the document or license file is valid; otherwise exit 1 with a reason code."""
    try:
        verifier = Verifier(load_root_public_key(root_key))
        if revocations is not None:
            verifier = verifier.with_revocations(revocations.read_text())
        token = document_file.read_bytes().strip()
    except (OSError, ValueError) as exc:
        _report_failure("UNREADABLE_INPUT", str(exc), as_json)
    except VerificationError as exc:
        _report_failure(f"REVOCATIONS_{exc.reason}", exc.detail, as_json)
    try:
        if token.startswith(ARMOR_BEGIN.encode()):
            machine = resolve_fingerprint(fingerprint) if fingerprint is not None else None
            verified = verify_license_file(token, verifier, fingerprint=machine).document
        else:
            verified = verifier.verify(token)
    except VerificationError as exc:
        _report_failure(exc.reason.value, exc.detail, as_json)
    if as_json:
        click.echo(json.dumps({"valid": True, "kid": verified.kid, "claims": verified.claims}))
        return
    claims = verified.claims
    click.echo(f"VALID  signed by {verified.kid}")
    for key in ("license_id", "status", "status_reason", "starts_at", "expires_at"):
        click.echo(f"  {key}: {claims.get(key)}")
    click.echo(f"  customer: {(claims.get('customer') or {}).get('name')}")
    if isinstance(claims.get("binding"), dict):
        click.echo(f"  bound to fingerprint: {claims['binding'].get('fingerprint')}")
    click.echo("  claims: " + json.dumps(claims, sort_keys=True))


def _report_failure(reason: str, detail: str, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"valid": False, "reason": reason, "detail": detail}))
    else:
        click.echo(f"INVALID {reason}: {detail}", err=True)
    sys.exit(1)
