"""Webhooks go to public addresses only (SSRF): refused at registration when the host is plainly forbidden, and
authoritatively at send time by the resolved address, which is then the address connected to, with TLS still
verifying the host name. Proxy settings in the environment are ignored. Against real HTTP(S) receivers."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from license_server.auth.tokens import Actor
from license_server.config import Settings
from license_server.events.egress import Egress, non_public_reason
from license_server.events.jobs import run_webhook_jobs
from license_server.events.service import EventType
from license_server.events.webhooks import fan_out
from license_server.runtime import Runtime
from tests.events.conftest import LOOPBACK, Receiver, _handler, deliver, delivery_rows, emit, make_endpoint

FORBIDDEN_URLS = [
    "http://127.0.0.1:5432/",
    "http://localhost:8000/hook",
    "http://api.localhost/hook",
    "http://[::1]:8080/",
    "http://2130706433/",  # 127.0.0.1 as one number
    "http://0x7f.1/",  # and in hex, abbreviated
    "http://0177.0.0.1/",  # and in octal
    "http://0.0.0.0:8000/",
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
    "http://100.100.100.200/latest/meta-data/",  # Alibaba's metadata (shared address space)
    "http://10.1.2.3/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://[fd00:ec2::254]/",  # AWS metadata over IPv6 (unique local)
    "http://[fe80::1]/",
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped
    "http://[64:ff9b::a00:1]/",  # NAT64 of 10.0.0.1
    "https://[2002:c0a8:101::1]/",  # 6to4 of 192.168.1.1
]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Nothing but public addresses allowed: the default."""
    return settings.model_copy(update={"webhook_allowed_networks": []})


def test_only_public_addresses_are_public() -> None:
    for address in ("93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "2a00:1450:4001::1"):
        assert non_public_reason(ip_address(address)) is None, address
    for address, reason in [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("10.0.0.1", "private"),
        ("fd00::1", "private"),
        ("100.64.0.1", "non-public"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - an address under test, nothing binds to it
        ("224.0.0.1", "multicast"),
        ("fec0::1", "site-local"),
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::7f00:1", "loopback"),
    ]:
        assert non_public_reason(ip_address(address)) == reason, address


async def test_registering_a_forbidden_literal_host_is_a_400_and_stores_nothing(
    client: httpx.AsyncClient, owner_headers: dict[str, str]
) -> None:
    for url in FORBIDDEN_URLS:
        response = await client.post("/v1/admin/webhooks/", json={"url": url}, headers=owner_headers)
        assert response.status_code == 400, (url, response.text)
        problem = response.json()
        assert problem["code"] == "webhook_destination_forbidden", url
        assert [e["field"] for e in problem["errors"]] == ["url"]
        assert "WEBHOOK_ALLOWED_NETWORKS" in problem["detail"]
    listed = await client.get("/v1/admin/webhooks/", headers=owner_headers)
    assert listed.json()["total"] == 0
    # A name is judged at send time, by what it resolves to; a public address is fine.
    for url in ("https://hooks.example.com/x", "http://93.184.215.14:8080/x"):
        assert (await client.post("/v1/admin/webhooks/", json={"url": url}, headers=owner_headers)).status_code == 201


async def test_the_allow_list_admits_its_networks_only(
    runtime: Runtime, client: httpx.AsyncClient, owner_headers: dict[str, str]
) -> None:
    runtime.settings = runtime.settings.model_copy(update={"webhook_allowed_networks": [ip_network("10.20.0.0/16")]})
    allowed = await client.post("/v1/admin/webhooks/", json={"url": "http://10.20.3.4/"}, headers=owner_headers)
    assert allowed.status_code == 201
    for url in ("http://10.21.0.1/", "http://127.0.0.1/"):
        refused = await client.post("/v1/admin/webhooks/", json={"url": url}, headers=owner_headers)
        assert refused.status_code == 400
        endpoint_id = allowed.json()["id"]
        patched = await client.patch(f"/v1/admin/webhooks/{endpoint_id}", json={"url": url}, headers=owner_headers)
        assert (patched.status_code, patched.json()["code"]) == (400, "webhook_destination_forbidden")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_at_send_time_a_forbidden_address_is_not_contacted_and_the_log_shows_no_answer(
    runtime: Runtime, actor: Actor, receiver: Receiver, http_client: httpx.AsyncClient, owner_headers: dict[str, str]
) -> None:
    """Endpoints registered while loopback was allowed; then the operator removed it from the allow-list."""
    runtime.settings = runtime.settings.model_copy(update={"webhook_allowed_networks": LOOPBACK})
    listening = await make_endpoint(runtime, actor, receiver.url("/open"))
    by_name = await make_endpoint(runtime, actor, f"http://localhost:{receiver.port}/by-name")
    closed = await make_endpoint(runtime, actor, f"http://127.0.0.1:{_closed_port()}/closed")
    runtime.settings = runtime.settings.model_copy(update={"webhook_allowed_networks": []})
    await emit(runtime, EventType.LICENSE_REVOKED)

    assert await run_webhook_jobs(runtime, http_client=http_client) == 3

    assert receiver.requests == []
    rows = {row.endpoint_id: row for row in await delivery_rows(runtime)}
    outcomes = {(r.state, r.attempts, r.last_status_code) for r in rows.values()}
    assert outcomes == {("pending", 1, None)}
    # An open port and a closed one look the same: the log says why nothing was sent, not what would have answered.
    literal = {rows[listening.endpoint.id].last_error, rows[closed.endpoint.id].last_error}
    assert literal == {
        "not sent: the host is a loopback address, which webhooks are not sent to unless "
        "LICENSE_SERVER_WEBHOOK_ALLOWED_NETWORKS allows it"
    }
    assert (rows[by_name.endpoint.id].last_error or "").startswith("not sent: the host resolves to a loopback address")
    assert "127.0.0.1" not in (rows[by_name.endpoint.id].last_error or "")


async def test_a_name_resolving_to_an_allowed_address_is_delivered_to_that_address_with_its_name(
    runtime: Runtime, actor: Actor, receiver: Receiver, http_client: httpx.AsyncClient
) -> None:
    lookups: list[tuple[str, int]] = []

    async def resolver(host: str, port: int) -> list[str]:
        lookups.append((host, port))
        return ["127.0.0.1"]

    await make_endpoint(runtime, actor, f"http://hooks.test:{receiver.port}/named")  # .test never resolves in DNS
    await emit(runtime, EventType.LICENSE_RENEWED, EventType.LICENSE_REVOKED)
    async with runtime.session_factory() as session:
        await fan_out(session, clock=runtime.clock)

    assert await deliver(runtime, http_client, egress=Egress(LOOPBACK, resolver=resolver)) == 2

    received = receiver.to("/named")
    assert [r.headers["host"] for r in received] == [f"hooks.test:{receiver.port}"] * 2
    assert lookups == [("hooks.test", receiver.port)] * 2  # one lookup per attempt: the checked one


async def test_the_next_checked_address_is_tried_when_one_cannot_be_reached_and_one_bad_address_refuses_all(
    runtime: Runtime, actor: Actor, receiver: Receiver, http_client: httpx.AsyncClient
) -> None:
    answers = {"two.test": ["127.0.0.2", "127.0.0.1"], "mixed.test": ["127.0.0.1", "10.0.0.1"]}

    async def resolver(host: str, port: int) -> list[str]:
        return answers[host]

    await make_endpoint(runtime, actor, f"http://two.test:{receiver.port}/two")  # nothing listens on 127.0.0.2
    mixed = await make_endpoint(runtime, actor, f"http://mixed.test:{receiver.port}/mixed")
    await emit(runtime, EventType.ACTIVATION_CREATED)
    async with runtime.session_factory() as session:
        await fan_out(session, clock=runtime.clock)

    assert await deliver(runtime, http_client, egress=Egress(LOOPBACK, resolver=resolver)) == 2

    assert [r.path for r in receiver.requests] == ["/two"]
    rows = {row.endpoint_id: row for row in await delivery_rows(runtime)}
    assert (rows[mixed.endpoint.id].last_error or "").startswith("not sent: the host resolves to a private address")


async def test_the_connection_goes_to_the_checked_address_not_to_a_second_lookup(
    runtime: Runtime, actor: Actor, receiver: Receiver, http_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name first resolves to an allowed address, then to the forbidden one (the receiver)."""
    answers = iter(["127.0.0.2"])  # allowed below; nothing listens there
    real_getaddrinfo = socket.getaddrinfo

    def rebinding_getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        numeric_only = kwargs.get("flags", args[3] if len(args) > 3 else 0) & socket.AI_NUMERICHOST
        if name == "rebind.test" and not numeric_only:
            return real_getaddrinfo(next(answers, "127.0.0.1"), port, *args, **kwargs)
        return real_getaddrinfo(host, port, *args, **kwargs)

    await make_endpoint(runtime, actor, f"http://rebind.test:{receiver.port}/rebound")
    monkeypatch.setattr(socket, "getaddrinfo", rebinding_getaddrinfo)
    await emit(runtime, EventType.LICENSE_EXPIRED)
    async with runtime.session_factory() as session:
        await fan_out(session, clock=runtime.clock)

    assert await deliver(runtime, http_client, egress=Egress([ip_network("127.0.0.2/32")])) == 1

    assert receiver.requests == []
    [row] = await delivery_rows(runtime)
    assert (row.attempts, row.last_status_code) == (1, None)
    assert (row.last_error or "").startswith("ConnectError")  # refused at 127.0.0.2, the address that was checked


async def test_proxy_settings_in_the_environment_are_ignored(
    runtime: Runtime, actor: Actor, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime.settings = runtime.settings.model_copy(update={"webhook_allowed_networks": LOOPBACK})
    proxy = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    proxy.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.port}")
        await make_endpoint(runtime, actor, receiver.url("/direct"))
        await emit(runtime, EventType.LICENSE_LOST)

        assert await run_webhook_jobs(runtime) == 1  # with the job's own client

        assert proxy.requests == []
        assert len(receiver.to("/direct")) == 1
    finally:
        server.shutdown()
        server.server_close()


# -- TLS: the pinned address, and the certificate still checked against the host name ---------------------------
def _certificate(tmp_path: Path, name: str) -> tuple[Path, Path, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path, certificate


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[tuple[Receiver, Path]]:
    """An HTTPS receiver on 127.0.0.1 whose certificate names hooks.test only; yields it and the CA to trust."""
    cert_path, key_path, _ = _certificate(tmp_path, "hooks.test")
    found = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(found))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]  # refused handshakes
    found.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield found, cert_path
    finally:
        server.shutdown()
        server.server_close()


async def test_https_to_a_pinned_address_still_verifies_the_host_name(
    runtime: Runtime, actor: Actor, tls_receiver: tuple[Receiver, Path]
) -> None:
    receiver, ca = tls_receiver

    async def resolver(host: str, port: int) -> list[str]:
        return ["127.0.0.1"] if host in ("hooks.test", "other.test") else []

    await make_endpoint(runtime, actor, f"https://hooks.test:{receiver.port}/tls")
    impostor = await make_endpoint(runtime, actor, f"https://other.test:{receiver.port}/impostor")
    await emit(runtime, EventType.LICENSE_SUSPENDED)
    async with runtime.session_factory() as session:
        await fan_out(session, clock=runtime.clock)

    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(ca)), trust_env=False) as client:
        assert await deliver(runtime, client, egress=Egress(LOOPBACK, resolver=resolver)) == 2

    [request] = receiver.requests  # the impostor's certificate check failed before anything was sent
    assert (request.path, request.headers["host"]) == ("/tls", f"hooks.test:{receiver.port}")
    rows = {row.endpoint_id: row for row in await delivery_rows(runtime)}
    failed = rows[impostor.endpoint.id]
    assert (failed.state, failed.last_status_code) == ("pending", None)
    assert "CERTIFICATE_VERIFY_FAILED" in (failed.last_error or "")
