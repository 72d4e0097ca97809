"""Which address a request counts against: X-Forwarded-For is believed only as far as trusted proxies wrote it."""

from __future__ import annotations

import ipaddress

import pytest

from license_server.client_addresses import client_address
from license_server.config import Settings

PROXIES = (ipaddress.ip_network("10.0.0.0/24"), ipaddress.ip_network("fd00::/64"))


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "expected"),
    [
        ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),  # an untrusted peer's header is ignored
        ("127.0.0.1", ["198.51.100.1"], "127.0.0.1"),  # loopback is not trusted unless configured
        ("10.0.0.2", [], "10.0.0.2"),  # a trusted proxy that names no one is the client
        ("10.0.0.2", ["198.51.100.1"], "198.51.100.1"),
        ("10.0.0.2", ["6.6.6.6, 198.51.100.1"], "198.51.100.1"),  # left of what the proxy appended: the client's own
        ("10.0.0.2", ["6.6.6.6", "198.51.100.1, 10.0.0.3"], "198.51.100.1"),  # two proxies, two header lines
        ("10.0.0.2", ["10.0.0.3, 10.0.0.4"], "10.0.0.3"),  # only proxies: the farthest one
        ("10.0.0.2", ["6.6.6.6, not-an-ip"], "10.0.0.2"),  # garbage stops the walk at the last good hop
        ("10.0.0.2", [" 2001:db8::1 "], "2001:db8::1"),
        ("fd00::5", ["2001:db8::1"], "2001:db8::1"),
        ("::ffff:10.0.0.2", ["198.51.100.1"], "198.51.100.1"),  # an IPv4 proxy seen through a dual-stack socket
        ("testclient", ["198.51.100.1"], "testclient"),  # not an address at all: never a trusted proxy
        (None, ["198.51.100.1"], None),
    ],
)
def test_client_address(peer: str | None, forwarded_for: list[str], expected: str | None) -> None:
    assert client_address(peer, forwarded_for, PROXIES) == expected


def test_without_trusted_proxies_the_header_is_never_read() -> None:
    assert client_address("127.0.0.1", ["198.51.100.1"], ()) == "127.0.0.1"


def test_trusted_proxies_are_a_comma_separated_cidr_list_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LICENSE_SERVER_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1,::1")
    assert [str(n) for n in Settings().trusted_proxies] == ["10.0.0.0/8", "127.0.0.1/32", "::1/128"]
    monkeypatch.setenv("LICENSE_SERVER_TRUSTED_PROXIES", "")
    assert Settings().trusted_proxies == []
