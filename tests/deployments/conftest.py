"""Fixtures for the deployment API: an issued license and helpers to activate and poll."""

from __future__ import annotations

from typing import Any

import httpx

from license_server.licenses.service import IssuedLicense


async def activate(
    client: httpx.AsyncClient, issued: IssuedLicense | str, fingerprint: str = "host-1", **fields: Any
) -> httpx.Response:
    key = issued if isinstance(issued, str) else issued.key
    return await client.post("/v1/activations", json={"license_key": key, "fingerprint": fingerprint, **fields})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
