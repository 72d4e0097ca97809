"""Which address a request comes from, for the rate limits: the peer, or, behind trusted proxies, the client they name.

Anyone can send ``X-Forwarded-For``; only the entries trusted proxies appended mean anything. The header is read
right to left: each entry a trusted proxy appended names the hop before it, and the first entry that is not itself a
trusted proxy is the client. With no trusted proxies (the default) the header is ignored, so a client cannot choose
the address its requests and failures count against. ``serve`` runs uvicorn without its own proxy-header handling
(which believed the header from any loopback peer), so this is the one rule.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Receive, Scope, Send

Network = IPv4Network | IPv6Network
FORWARDED_FOR = b"x-forwarded-for"


def _parse(value: str) -> IPv4Address | IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def _trusted(address: IPv4Address | IPv6Address, trusted: Sequence[Network]) -> bool:
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in trusted)


def client_address(peer: str | None, forwarded_for: Iterable[str], trusted: Sequence[Network]) -> str | None:
    """The address to count a request against. ``forwarded_for``: the X-Forwarded-For header values, in order."""
    peer_address = _parse(peer) if peer else None
    if peer_address is None or not _trusted(peer_address, trusted):
        return peer
    client = peer_address
    hops = [hop for value in forwarded_for for hop in value.split(",")]
    for hop in reversed(hops):
        address = _parse(hop)
        if address is None:  # not an address: whatever wrote it is not a trusted proxy; the last good hop stands
            break
        client = address
        if not _trusted(address, trusted):
            break
    return str(client)


def trusted_proxies_middleware(trusted: Sequence[Network]) -> Callable[[ASGIApp], ASGIApp]:
    """ASGI middleware that puts the client address (by the rule above) in ``scope["client"]`` for every request.
    Installed only when trusted proxies are configured: without them the peer is the address and nothing is read."""
    networks = tuple(trusted)

    def middleware(app: ASGIApp) -> ASGIApp:
        async def with_client_address(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] in {"http", "websocket"}:
                peer = scope.get("client")
                forwarded = [bytes(v).decode("latin-1") for k, v in scope["headers"] if k == FORWARDED_FOR]
                address = client_address(peer[0] if peer else None, forwarded, networks)
                if address is not None and (peer is None or address != peer[0]):
                    scope["client"] = (address, 0)
            await app(scope, receive, send)

        return with_client_address

    return middleware
