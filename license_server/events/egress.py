"""Where webhooks may go: public addresses only, unless the operator allows a network for on-premises receivers.

An admin chooses webhook URLs and the delivery log, which viewers read, records what answered. Left open, that makes
the server a port scanner of its own host and networks, and a client of the cloud's metadata service. So every
address a host resolves to at send time must be public (or inside ``LICENSE_SERVER_WEBHOOK_ALLOWED_NETWORKS``), and
the request then goes to the address that was checked: the URL is rewritten to it, so no second lookup, which DNS
rebinding could answer differently, happens between the check and the connection. TLS still verifies the URL's host
name (SNI) and the ``Host`` header still names it.

Registration refuses a literal host that is obviously forbidden (an IP address in any spelling the resolver accepts,
``localhost``) for a clear 400; a name is only judged at send time, when its addresses are known.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import httpx

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network
# host, port → the addresses to connect to. The system's resolver unless a test substitutes one.
Resolver = Callable[[str, int], Awaitable[list[str]]]

ALLOW_LIST_SETTING = "LICENSE_SERVER_WEBHOOK_ALLOWED_NETWORKS"
# IPv6 prefixes whose last 32 bits are an IPv4 address the packet may end up at: NAT64 and IPv4-compatible.
_EMBEDDING_IPV4 = (IPv6Network("64:ff9b::/96"), IPv6Network("64:ff9b:1::/48"), IPv6Network("::/96"))
_LOOPBACK_NAMES = (IPv4Address("127.0.0.1"), IPv6Address("::1"))


class DestinationRefused(Exception):
    """The host is, or resolves to, an address webhooks may not be sent to. The message never names the address."""


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _embedded_ipv4(address: IPAddress) -> IPv4Address | None:
    if isinstance(address, IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address != IPv6Address("::") and address != IPv6Address("::1") and any(address in n for n in _EMBEDDING_IPV4):
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def non_public_reason(address: IPAddress) -> str | None:
    """Why an address is not a public one (a word for the message), or None when it is public."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return non_public_reason(embedded)
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:  # 169.254.169.254, the usual cloud metadata address, is link-local
        return "link-local"
    if address.is_unspecified:
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    if address.is_private:  # RFC 1918, IPv6 unique local (fc00::/7), documentation and benchmarking ranges, ...
        return "private"
    if isinstance(address, IPv6Address) and address.is_site_local:
        return "site-local"
    if not address.is_global:  # shared address space (100.64.0.0/10, e.g. Alibaba's metadata), reserved ranges
        return "non-public"
    return None


MAX_ADDRESSES_TRIED = 4


@dataclass(frozen=True)
class PinnedRequest:
    """A webhook URL rewritten to each checked address in the resolver's order of preference (the next is tried
    when one cannot be connected to), with what keeps the request naming the original host."""

    urls: tuple[httpx.URL, ...]
    headers: dict[str, str]
    extensions: dict[str, str]


class Egress:
    """The address rule for webhook destinations, and the pinning of a URL to a checked address."""

    def __init__(self, allowed_networks: Iterable[IPNetwork] = (), *, resolver: Resolver = system_resolver) -> None:
        self.allowed_networks: tuple[IPNetwork, ...] = tuple(allowed_networks)
        self._resolver = resolver

    def _refusal(self, address: IPAddress) -> str | None:
        reason = non_public_reason(address)
        if reason is None:
            return None
        embedded = _embedded_ipv4(address)
        if any(a in network for network in self.allowed_networks for a in (address, embedded) if a is not None):
            return None
        return reason

    def _check(self, addresses: Sequence[IPAddress], what: str) -> None:
        for address in addresses:
            reason = self._refusal(address)
            if reason is not None:
                raise DestinationRefused(
                    f"{what} a {reason} address, which webhooks are not sent to unless {ALLOW_LIST_SETTING} allows it"
                )

    def check_literal_host(self, host: str) -> None:
        """At registration: refuse an IP literal (in any spelling the resolver reads as one) or localhost."""
        name = host.rstrip(".").lower()
        if name == "localhost" or name.endswith(".localhost"):
            self._check(_LOOPBACK_NAMES, "the host is")
            return
        literal = _numeric_address(name)
        if literal is not None:
            self._check([literal], "the host is")

    async def pin(self, url: str) -> PinnedRequest:
        """Resolve the URL's host, refuse it if any of its addresses is forbidden, else aim the URL at them."""
        parsed = httpx.URL(url)
        host = parsed.raw_host.decode("ascii")  # IDNA-encoded, as the resolver needs it
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            resolved = [ipaddress.ip_address(a) for a in await self._resolver(host, port)]
        except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
            raise DestinationRefused("the host name could not be resolved") from exc
        except ValueError as exc:
            raise DestinationRefused("the host resolved to something that is not an address") from exc
        if not resolved:
            raise DestinationRefused("the host name could not be resolved")
        is_name = _numeric_address(host) is None
        self._check(resolved, "the host resolves to" if is_name else "the host is")
        extensions = {}
        if parsed.scheme == "https" and is_name:
            extensions["sni_hostname"] = host
        addresses = list(dict.fromkeys(str(address) for address in resolved))[:MAX_ADDRESSES_TRIED]
        return PinnedRequest(
            urls=tuple(parsed.copy_with(host=address) for address in addresses),
            # Each attempt on a connection of its own: a pooled connection to the same address, verified for
            # another host name, must not carry this host's request.
            headers={"host": parsed.netloc.decode("ascii"), "connection": "close"},
            extensions=extensions,
        )


def _numeric_address(host: str) -> IPAddress | None:
    """The address a host spells, as the resolver reads it (``2130706433``, ``127.1`` and ``0x7f.1`` included)."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, flags=socket.AI_NUMERICHOST, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return None
    return ipaddress.ip_address(infos[0][4][0]) if infos else None
