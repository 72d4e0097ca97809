"""Public key publication and the owner's key management routes."""

from __future__ import annotations

from litestar import Controller, Response, get, post
from litestar.params import FromPath

from license_server.auth.guards import needs
from license_server.auth.tokens import Permission
from license_server.dependencies import CurrentActor, Db, RuntimeDep
from license_server.signing.keys import IssuingKey, Keyring
from license_server.signing.schemas import JWKSOut, SigningKeyOut
from license_server.signing.service import retire_signing_key, rotate_signing_key

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

    @get("/jwks.json", summary="Issuing public keys with their root certificates (x5c)")
    async def jwks(self, runtime: RuntimeDep) -> Response[JWKSOut]:
        keyring = runtime.signer.keyring()
        return Response(JWKSOut.model_validate(keyring.jwks()), headers=PUBLIC_CACHE)

    @get(
        "/license-key-revocations.jws",
        media_type="application/jwt",
        summary="Root-signed list of retired issuing keys, for offline verifiers",
    )
    async def revocations(self, runtime: RuntimeDep) -> Response[str]:
        return Response(runtime.signer.keyring().revocations or "", media_type="application/jwt", headers=PUBLIC_CACHE)


class KeyController(Controller):
    path = "/v1/admin/keys"
    tags = ["keys"]

    @get("/", opt=needs(Permission.MANAGE_KEYS), summary="List signing keys")
    async def list_(self, runtime: RuntimeDep) -> list[SigningKeyOut]:
        keyring = runtime.signer.keyring()
        return [key_out(key, keyring) for key in sorted(keyring.keys.values(), key=lambda k: k.created_at)]

    @post(
        "/rotate",
        opt=needs(Permission.MANAGE_KEYS),
        status_code=201,
        summary="Create a new issuing key and sign with it; older keys stay published",
    )
    async def rotate(self, db: Db, actor: CurrentActor, runtime: RuntimeDep) -> SigningKeyOut:
        key = await rotate_signing_key(db, actor=actor, signer=runtime.signer, clock=runtime.clock)
        return key_out(key, runtime.signer.keyring())

    @post(
        "/{kid:str}/retire",
        opt=needs(Permission.MANAGE_KEYS),
        status_code=200,
        summary="Stop publishing a key and list it as retired",
    )
    async def retire(self, db: Db, actor: CurrentActor, runtime: RuntimeDep, kid: FromPath[str]) -> SigningKeyOut:
        key = await retire_signing_key(db, actor=actor, signer=runtime.signer, kid=kid, clock=runtime.clock)
        return key_out(key, runtime.signer.keyring())
