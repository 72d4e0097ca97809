"""``keys``: list, rotate, retire and export the signing keys."""

from __future__ import annotations

from pathlib import Path

import click
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.tokens import cli_actor
from license_server.cli.common import emit, json_option, run_with_session
from license_server.runtime import Runtime
from license_server.signing.service import retire_signing_key, rotate_signing_key


@click.group()
def keys() -> None:
    """Signing keys."""


@keys.command("list")
@json_option
def list_keys(as_json: bool) -> None:
    """List issuing keys; the signer is marked."""

    async def work(runtime: Runtime, _: AsyncSession) -> list[dict[str, object]]:
        keyring = runtime.signer.keyring()
        return [
            {
                "kid": k.kid,
                "created_at": k.created_at.isoformat(),
                "retired_at": k.retired_at.isoformat() if k.retired_at else None,
                "signer": k.kid == keyring.signer_kid,
            }
            for k in sorted(keyring.keys.values(), key=lambda k: k.created_at)
        ]

    rows = run_with_session(work, as_json=as_json)
    if as_json:
        emit({"keys": rows}, as_json=True)
        return
    for row in rows:
        state = "signer" if row["signer"] else "retired" if row["retired_at"] else "published"
        click.echo(f"{row['kid']}  {state:9}  created {row['created_at']}")


@keys.command()
@json_option
def rotate(as_json: bool) -> None:
    """Create a new issuing key certified by the root and sign with it from now on."""

    async def work(runtime: Runtime, session: AsyncSession) -> str:
        return (await rotate_signing_key(session, actor=cli_actor(), signer=runtime.signer)).kid

    kid = run_with_session(work, as_json=as_json)
    emit({"kid": kid}, as_json=as_json, human=f"new signing key {kid}; older keys stay published until retired")


@keys.command()
@click.argument("kid")
@json_option
def retire(kid: str, as_json: bool) -> None:
    """Stop publishing key KID and add it to the root-signed revocation list."""

    async def work(runtime: Runtime, session: AsyncSession) -> None:
        await retire_signing_key(session, actor=cli_actor(), signer=runtime.signer, kid=kid)

    run_with_session(work, as_json=as_json)
    emit({"kid": kid, "retired": True}, as_json=as_json, human=f"retired {kid}")


@keys.command("export-public")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("public-keys"), show_default=True)
@json_option
def export_public(out_dir: Path, as_json: bool) -> None:
    """Write root.pub, jwks.json and revocations.jws: everything a verifier needs."""

    async def work(runtime: Runtime, _: AsyncSession) -> list[Path]:
        return runtime.signer.store.export_public(out_dir)

    written = run_with_session(work, as_json=as_json)
    emit({"files": [str(p) for p in written]}, as_json=as_json, human="\n".join(f"wrote {p}" for p in written))
