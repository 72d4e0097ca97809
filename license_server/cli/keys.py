"""``keys``: the root's commands on the key host, and the imports and listings on the servers.

On the key host (where the root lives; ``--root-dir``, default ``$LICENSE_SERVER_ROOT_KEYS_DIR`` or ``keys/root``):

    keys root init                   create the root key
    keys root adopt KEYS_DIR         take over the root key an older version kept in a server's keys directory
    keys rotate --out BUNDLE         a new issuing key and its certificate, for the servers to import
    keys issue-cert REQUEST --out B  certify a key a server made itself (`keys request`)
    keys retire KID --out LIST       the next root-signed revocation list

On each server:

    keys import FILE                 a bundle or a revocation list (a list reaches every replica via the database)
    keys request --out REQUEST       make an issuing key here, for `keys issue-cert`
    keys list | export-public
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click
from sqlalchemy.ext.asyncio import AsyncSession

from license_server.auth.tokens import cli_actor
from license_server.cli.common import emit, emit_list, fail, json_option, run_with_session, settings, timestamp_text
from license_server.config import Settings
from license_server.errors import LicenseServerError
from license_server.runtime import Runtime, key_store
from license_server.signing.files import parse_public_pem
from license_server.signing.keys import resolve_passphrase
from license_server.signing.root import RootKeyStore
from license_server.signing.service import import_key_bundle, import_revocation_list, signing_key_list

REVOCATIONS_BEGIN = "eyJ"  # a JWS (the revocation list) starts with a base64url JSON header; a bundle with "{"


def root_store(config: Settings, root_dir: Path | None) -> RootKeyStore:
    passphrase = resolve_passphrase(
        config.key_passphrase.get_secret_value() if config.key_passphrase else None, config.passphrase_path
    )
    return RootKeyStore(root_dir or config.root_dir, passphrase, allow_unencrypted=config.allow_unencrypted_keys)


root_dir_option = click.option(
    "--root-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="The root key's directory on the key host (default: $LICENSE_SERVER_ROOT_KEYS_DIR or keys/root).",
)
out_option = click.option(
    "--out", "out", required=True, type=click.Path(path_type=Path, dir_okay=False), help="File to write."
)


def _write_new(path: Path, data: bytes, *, as_json: bool) -> None:
    """Output files are never overwritten: a bundle holds an (encrypted) private key."""
    try:
        with open(path, "xb") as handle:
            handle.write(data)
        path.chmod(0o600)
    except FileExistsError:
        fail(f"{path} exists; choose another --out", "file_exists", as_json=as_json)


@click.group()
def keys() -> None:
    """Signing keys: the root's commands (key host) and imports (servers)."""


# -- the key host ---------------------------------------------------------------------------------------------------
@keys.group()
def root() -> None:
    """The root key, on the key host."""


@root.command("init")
@root_dir_option
@json_option
def root_init(root_dir: Path | None, as_json: bool) -> None:
    """Create the root key (encrypted under the key passphrase). Back up the directory: see docs/keys.md."""
    store = root_store(settings(), root_dir)
    try:
        created = store.initialise()
    except LicenseServerError as exc:
        fail(exc.detail, exc.code, as_json=as_json)
    emit(
        {"created": created, "root_dir": str(store.root_dir)},
        as_json=as_json,
        human=f"root key created in {store.root_dir}/ (give root.pub to verifiers and servers)"
        if created
        else f"a root key exists in {store.root_dir}/; nothing changed",
    )


@root.command("adopt")
@click.argument("server_keys_dir", type=click.Path(path_type=Path, file_okay=False, exists=True))
@root_dir_option
@json_option
def root_adopt(server_keys_dir: Path, root_dir: Path | None, as_json: bool) -> None:
    """Move the root key out of a key directory from a version that kept it on servers (SERVER_KEYS_DIR, copied
    to the key host), with a state built from that keyring. Then delete root.key from every server."""
    store = root_store(settings(), root_dir)
    try:
        moved = store.adopt_legacy_root(server_keys_dir)
    except LicenseServerError as exc:
        fail(exc.detail, exc.code, as_json=as_json)
    emit(
        {"adopted": moved, "root_dir": str(store.root_dir)},
        as_json=as_json,
        human=f"the root key now lives in {store.root_dir}/" if moved else "nothing to adopt; nothing changed",
    )


@keys.command()
@root_dir_option
@out_option
@click.option(
    "--bundle-passphrase-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Encrypt the bundle's key with this passphrase (default: the key passphrase, as the servers have it).",
)
@json_option
def rotate(root_dir: Path | None, out: Path, bundle_passphrase_file: Path | None, as_json: bool) -> None:
    """On the key host: a new issuing key certified by the root, written as a bundle for `keys import`."""
    config = settings()
    store = root_store(config, root_dir)
    try:
        passphrase = (
            resolve_passphrase(None, bundle_passphrase_file)
            if bundle_passphrase_file
            else resolve_passphrase(
                config.key_passphrase.get_secret_value() if config.key_passphrase else None, config.passphrase_path
            )
        )
        bundle = store.issue_key(bundle_passphrase=passphrase)
    except LicenseServerError as exc:
        fail(exc.detail, exc.code, as_json=as_json)
    _write_new(out, bundle.to_json(), as_json=as_json)
    emit(
        {"kid": bundle.kid, "bundle": str(out)},
        as_json=as_json,
        human=f"new issuing key {bundle.kid} in {out}; import it on every server: license-server keys import {out}",
    )


@keys.command("issue-cert")
@click.argument("request", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@root_dir_option
@out_option
@json_option
def issue_cert(request: Path, root_dir: Path | None, out: Path, as_json: bool) -> None:
    """On the key host: certify the public key a server made (`keys request`); the bundle holds no private key."""
    try:
        public_key = parse_public_pem(request.read_bytes(), request.name)
        bundle = root_store(settings(), root_dir).issue_certificate(public_key)
    except LicenseServerError as exc:
        fail(exc.detail, exc.code, as_json=as_json)
    _write_new(out, bundle.to_json(), as_json=as_json)
    emit({"kid": bundle.kid, "bundle": str(out)}, as_json=as_json, human=f"certified {bundle.kid} in {out}")


@keys.command()
@click.argument("kid")
@root_dir_option
@out_option
@json_option
def retire(kid: str, root_dir: Path | None, out: Path, as_json: bool) -> None:
    """On the key host: add KID to the root-signed revocation list (the next number), for `keys import`."""
    try:
        token = root_store(settings(), root_dir).retire(kid)
    except LicenseServerError as exc:
        fail(exc.detail, exc.code, as_json=as_json)
    _write_new(out, token.encode() + b"\n", as_json=as_json)
    emit(
        {"kid": kid, "retired": True, "revocations": str(out)},
        as_json=as_json,
        human=f"retired {kid} in {out}; import it on a server: license-server keys import {out}",
    )


# -- the servers ----------------------------------------------------------------------------------------------------
@keys.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--bundle-passphrase-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="The passphrase the bundle's key is encrypted with, when it is not this server's key passphrase.",
)
@click.option("--no-signer", is_flag=True, help="Import the key without signing with it yet.")
@json_option
def import_(file: Path, bundle_passphrase_file: Path | None, no_signer: bool, as_json: bool) -> None:
    """Import a key bundle (`keys rotate`/`issue-cert`) or a revocation list (`keys retire`) from the key host."""
    text = file.read_text().strip()
    if text.startswith(REVOCATIONS_BEGIN):

        async def work(runtime: Runtime, session: AsyncSession) -> dict[str, object]:
            imported = await import_revocation_list(session, actor=cli_actor(), signer=runtime.signer, token=text)
            return {"sequence": imported.sequence, "retired": sorted(imported.kids)}

        result = run_with_session(work, as_json=as_json)
        emit(result, as_json=as_json, human=f"revocation list {result['sequence']} in force: {result['retired']}")
        return
    config = settings()
    store = key_store(config)
    first = not store.is_initialised
    try:
        bundle_passphrase = resolve_passphrase(None, bundle_passphrase_file) if bundle_passphrase_file else None
        if first:  # no database to audit into yet (`init` comes next)
            kid = asyncio.run(
                import_key_bundle(
                    None,
                    actor=cli_actor(),
                    signer_store=store,
                    bundle=text.encode(),
                    bundle_passphrase=bundle_passphrase,
                    make_signer=not no_signer,
                )
            )
        else:

            async def audited(runtime: Runtime, session: AsyncSession) -> str:
                return await import_key_bundle(
                    session,
                    actor=cli_actor(),
                    signer_store=runtime.signer.store,
                    bundle=text.encode(),
                    bundle_passphrase=bundle_passphrase,
                    make_signer=not no_signer,
                )

            kid = run_with_session(audited, as_json=as_json)
    except LicenseServerError as exc:
        fail(exc.detail, exc.code, as_json=as_json)
    emit(
        {"kid": kid, "signer": not no_signer},
        as_json=as_json,
        human=f"imported {kid}" + ("; it signs from now on" if not no_signer else ""),
    )


@keys.command()
@out_option
@json_option
def request(out: Path, as_json: bool) -> None:
    """Make an issuing key on this server and write its public key, for `keys issue-cert` on the key host."""
    try:
        kid, pem = key_store(settings()).request_key()
    except LicenseServerError as exc:
        fail(exc.detail, exc.code, as_json=as_json)
    _write_new(out, pem, as_json=as_json)
    emit({"kid": kid, "request": str(out)}, as_json=as_json, human=f"made key {kid}; certify {out} on the key host")


@keys.command("list")
@json_option
def list_keys(as_json: bool) -> None:
    """List issuing keys; the signer is marked."""

    async def work(runtime: Runtime, _: AsyncSession) -> list[dict[str, object]]:
        await runtime.revocation_watch.check()
        keyring = runtime.signer.keyring()
        return [
            {
                "kid": k.kid,
                "created_at": timestamp_text(k.created_at),
                "retired_at": timestamp_text(k.retired_at) if k.retired_at else None,
                "signer": k.kid == keyring.signer_kid,
            }
            for k in signing_key_list(keyring)
        ]

    def line(row: dict[str, object]) -> str:
        state = "signer" if row["signer"] else "retired" if row["retired_at"] else "published"
        return f"{row['kid']}  {state:9}  created {row['created_at']}"

    emit_list(run_with_session(work, as_json=as_json), as_json=as_json, things="keys", row=line)


@keys.command("export-public")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("public-keys"), show_default=True)
@json_option
def export_public(out_dir: Path, as_json: bool) -> None:
    """Write root.pub, jwks.json and revocations.jws: everything a verifier needs."""

    async def work(runtime: Runtime, _: AsyncSession) -> list[Path]:
        await runtime.revocation_watch.check()  # a list another replica imported counts too
        return runtime.signer.store.export_public(out_dir, runtime.signer.keyring())

    written = run_with_session(work, as_json=as_json)
    emit({"files": [str(p) for p in written]}, as_json=as_json, human="\n".join(f"wrote {p}" for p in written))
