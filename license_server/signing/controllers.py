"""Public key publication and the owner's key management routes.

Keys are made and retired on the key host, where the root lives; these routes import what it produced (a key
bundle, a revocation list) into this server. A revocation list imported here reaches every replica through the
database.
"""

from __future__ import annotations

import hashlib
from typing import Annotated

from litestar import Controller, Response, get, post
from litestar.params import HeaderParameter, JSONBody

from license_server.auth.guards import CurrentActor, needs
from license_server.auth.tokens import Permission
from license_server.dependencies import Db, RuntimeDep
from license_server.signing.keys import IssuingKey, Keyring
from license_server.signing.schemas import JWKSOut, KeyBundleIn, RevocationListIn, RevocationListOut, SigningKeyOut
from license_server.signing.service import import_key_bundle, import_revocation_list, signing_key_list

PUBLIC_CACHE = {"Cache-Control": "public, max-age=300"}


def key_out(key: IssuingKey, keyring: Keyring) -> SigningKeyOut:
    return SigningKeyOut(
        kid=key.kid,
        created_at=key.created_at,
        retired_at=key.retired_at,
        signer=key.kid == keyring.signer_kid,
    )


class WellKnownController(Controller):
    path = "/.well-known"
    tags = ["public keys"]

    @get("/jwks.json", summary="Issuing public keys with their root certificates (x5c); retired keys are left out")
    async def jwks(self, runtime: RuntimeDep) -> Response[JWKSOut]:
        await runtime.revocation_watch.check()
        keyring = runtime.signer.keyring()
        return Response(JWKSOut.model_validate(keyring.jwks()), headers=PUBLIC_CACHE)

    @get(
        "/license-key-revocations.jws",
        media_type="application/jwt",
        summary="The newest root-signed list of retired issuing keys (numbered: holders refuse an older one)",
    )
    async def revocations(
        self, runtime: RuntimeDep, if_none_match: Annotated[str | None, HeaderParameter(name="If-None-Match")] = None
    ) -> Response[str]:
        await runtime.revocation_watch.check()
        token = runtime.signer.keyring().revocations or ""
        etag = '"' + hashlib.sha256(token.encode()).hexdigest()[:32] + '"'
        headers = {**PUBLIC_CACHE, "ETag": etag}
        if if_none_match is not None and etag in {tag.strip() for tag in if_none_match.split(",")}:
            return Response("", status_code=304, media_type="application/jwt", headers=headers)
        return Response(token, media_type="application/jwt", headers=headers)


class KeyController(Controller):
    path = "/v1/admin/keys"
    tags = ["keys"]

    @get("/", opt=needs(Permission.MANAGE_KEYS), summary="List signing keys")
    async def list_(self, runtime: RuntimeDep) -> list[SigningKeyOut]:
        await runtime.revocation_watch.check()
        keyring = runtime.signer.keyring()
        return [key_out(key, keyring) for key in signing_key_list(keyring)]

    @post(
        "/import",
        opt=needs(Permission.MANAGE_KEYS),
        status_code=201,
        summary="Import an issuing key bundle from the key host (`keys rotate --out`); it signs from now on",
    )
    async def import_bundle(
        self, data: JSONBody[KeyBundleIn], db: Db, actor: CurrentActor, runtime: RuntimeDep
    ) -> SigningKeyOut:
        kid = await import_key_bundle(
            db, actor=actor, signer_store=runtime.signer.store, bundle=data.bundle.encode(), clock=runtime.clock
        )
        keyring = runtime.signer.reload()
        return key_out(keyring.keys[kid], keyring)

    @post(
        "/revocations",
        opt=needs(Permission.MANAGE_KEYS),
        status_code=200,
        summary="Import a root-signed revocation list (`keys retire --out`); every replica applies it",
    )
    async def import_revocations(
        self, data: JSONBody[RevocationListIn], db: Db, actor: CurrentActor, runtime: RuntimeDep
    ) -> RevocationListOut:
        imported = await import_revocation_list(
            db, actor=actor, signer=runtime.signer, token=data.revocations, clock=runtime.clock
        )
        runtime.poll_state.forget_documents_of(imported.kids)
        return RevocationListOut(sequence=imported.sequence, retired=sorted(imported.kids))
