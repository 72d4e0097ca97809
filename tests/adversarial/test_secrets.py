"""No secret ever reaches a log line or an error body; private files are 0600 and the server refuses looser ones.

A full workflow runs against a real server at DEBUG (its stdout and stderr captured) and, separately, in process
with every logger at DEBUG (SQL statements and their parameters included). Every log line and every error body is
searched for every secret the workflow handled. A new kind of secret is one line in ``SECRET_KINDS``, and the
workflow step that creates it adds its value with ``secrets.add(kind, value)``.
"""

from __future__ import annotations

import base64
import json
import logging
import stat
import subprocess
from collections import defaultdict
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from license_server.signing.keys import ISSUING_DIR, SECRET_HASHING_KEY
from license_server.signing.root import ROOT_KEY
from tests.conftest import PASSPHRASE
from tests.e2e.conftest import LICENSE_SERVER, Cli, free_port, start_server

pytestmark = pytest.mark.slow

SECRET_KINDS = [
    "private key",  # raw Ed25519 private bytes (hex, base64, base64url) and the encrypted PEM body
    "key passphrase",
    "secret-hashing key",
    "license key",
    "admin token",
    "deployment token",
    "webhook signing secret",
    "inner-API secret",
    "metrics token",
]


class Secrets:
    def __init__(self) -> None:
        self.values: dict[str, set[str]] = defaultdict(set)

    def add(self, kind: str, value: str) -> None:
        assert kind in SECRET_KINDS, f"declare {kind!r} in SECRET_KINDS"
        assert len(value) >= 12, f"a {kind} this short would match by accident"
        self.values[kind].add(value)

    def found_in(self, text: str) -> list[str]:
        return [f"{kind} ({value[:6]}...)" for kind, values in self.values.items() for value in values if value in text]


def key_material(keys_dir: Path, passphrase: bytes, secrets: Secrets) -> None:
    for path in [keys_dir / "root" / ROOT_KEY, *sorted((keys_dir / ISSUING_DIR).glob("*.key"))]:
        pem = path.read_bytes()
        for line in pem.decode().splitlines():
            if not line.startswith("-----") and len(line) >= 40:
                secrets.add("private key", line)
        key = serialization.load_pem_private_key(pem, password=passphrase)
        raw = key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        secrets.add("private key", raw.hex())
        secrets.add("private key", base64.b64encode(raw).decode().rstrip("="))
        secrets.add("private key", base64.urlsafe_b64encode(raw).decode().rstrip("="))
    hashing = (keys_dir / SECRET_HASHING_KEY).read_bytes()
    for encoded in (hashing.hex(), base64.b64encode(hashing).decode().rstrip("="), hashing.decode(errors="ignore")):
        if len(encoded.strip()) >= 12:
            secrets.add("secret-hashing key", encoded.strip())


def workflow(http: httpx.Client, owner_token: str, secrets: Secrets) -> list[httpx.Response]:
    """Everything a vendor and a deployment do, wrong moves included; returns every response for inspection."""
    secrets.add("admin token", owner_token)
    admin = {"Authorization": f"Bearer {owner_token}"}
    seen: list[httpx.Response] = []

    def call(method: str, url: str, **kwargs: object) -> httpx.Response:
        response = http.request(method, url, **kwargs)  # type: ignore[arg-type]
        seen.append(response)
        return response

    viewer = call("POST", "/v1/admin/tokens/", json={"name": "viewer", "role": "viewer"}, headers=admin).json()
    secrets.add("admin token", viewer["token"])
    hook = call("POST", "/v1/admin/webhooks/", json={"url": "https://example.com/h"}, headers=admin).json()
    secrets.add("webhook signing secret", hook["secret"])
    customer = call("POST", "/v1/admin/customers/", json={"name": "Secretive Corp"}, headers=admin).json()
    issued = call(
        "POST", "/v1/admin/licenses/", json={"customer_id": customer["id"], "expires_at": "2035-01-01"}, headers=admin
    ).json()
    key = issued["key"]
    secrets.add("license key", key)
    rotated = call("POST", f"/v1/admin/licenses/{issued['id']}/actions/rotate-key", json={}, headers=admin).json()
    secrets.add("license key", rotated["key"])
    key = rotated["key"]
    activated = call("POST", "/v1/activations", json={"license_key": key, "fingerprint": "host-a"}).json()
    token = activated["deployment_token"]
    secrets.add("deployment token", token)
    deployment = {"Authorization": f"Bearer {token}"}
    call("GET", "/v1/license", headers=deployment)
    usage = {"measured_at": "2026-01-01T00:00:00Z", "idempotency_key": "r1", "workspaces": [{"id": "w", "members": 3}]}
    call("POST", "/v1/usage", json=usage, headers=deployment)
    call("POST", "/v1/licenses/validate", json={"license_key": key, "nonce": "n" * 16, "fingerprint": "host-a"})
    inner_secret = call(
        "POST", f"/v1/admin/licenses/{issued['id']}/inner-api/credentials", json={"label": "dify"}, headers=admin
    ).json()["secret"]
    secrets.add("inner-API secret", inner_secret)
    dify = {"Enterprise-Api-Secret-Key": inner_secret}
    call("GET", "/inner/api/info", headers=dify)
    call("POST", "/inner/api/webapp/permission/batch", json={"userId": "u", "appIds": ["a"]}, headers=dify)
    # Wrong moves, each carrying a secret where a careless error message would echo it back.
    call("POST", "/v1/activations", json={"license_key": issued["key"], "fingerprint": "host-b"})  # the rotated-out key
    call("POST", "/v1/activations", json={"license_key": key, "fingerprint": "x" * 300})
    call("POST", "/v1/activations", json={"license_key": key, "fingerprint": "h", "bogus": key})
    call(
        "POST",
        "/v1/activations",
        content=f'{{"license_key": "{key}", "license_key": "{key}"}}',
        headers={"content-type": "application/json"},
    )
    call("POST", "/v1/activations", content=f'{{"license_key": "{key}"', headers={"content-type": "application/json"})
    call("POST", "/v1/activations", json={"license_key": [key], "fingerprint": "h"})
    call("GET", "/v1/license", headers={"Authorization": f"Bearer {token}x"})
    call("GET", "/v1/license", headers={"Authorization": f"Bearer {owner_token}"})
    call("GET", "/v1/admin/licenses", headers={"Authorization": f"Bearer {token}"})
    call("GET", "/v1/admin/licenses", headers={"Authorization": f"Bearer {owner_token}x"})
    call("GET", "/v1/admin/tokens/", headers={"Authorization": f"Bearer {viewer['token']}"})
    call("GET", "/inner/api/info", headers={"Enterprise-Api-Secret-Key": inner_secret + "x"})
    call("GET", "/inner/api/info", headers={"Enterprise-Api-Secret-Key": key})
    call("POST", "/inner/api/webapp/access-mode", json={"appId": inner_secret, "accessMode": key}, headers=dify)
    call("POST", "/inner/api/default-workspace/members", json={"account_id": inner_secret}, headers=dify)
    call("POST", "/v1/usage", json={**usage, "measured_at": key}, headers=deployment)
    call("POST", "/v1/admin/customers/", json={"name": key, "contact_email": key}, headers=admin)
    call("DELETE", f"/v1/activations/{activated['activation_id']}", headers=deployment)
    call("POST", f"/v1/admin/licenses/{issued['id']}/actions/revoke", json={"reason": "done"}, headers=admin)
    call("POST", "/v1/licenses/validate", json={"license_key": key, "nonce": "n" * 16})
    return seen


def error_bodies(responses: list[httpx.Response]) -> str:
    return "\n".join(r.text for r in responses if r.status_code >= 400)


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_no_secret_in_server_logs_at_debug_or_in_any_error_body(cli: Cli, log_format: str) -> None:
    metrics_token = "metrics-token-of-the-secrets-test"
    cli.env = {
        **cli.env,
        "LICENSE_SERVER_LOG_LEVEL": "DEBUG",
        "LICENSE_SERVER_LOG_FORMAT": log_format,
        "LICENSE_SERVER_ACCESS_LOG": "true",  # a line per request too
        "LICENSE_SERVER_METRICS_TOKEN": metrics_token,
    }
    init = cli.run("init", "--dev", "--json")
    owner_token = json.loads(init.stdout)["admin_token"]
    secrets = Secrets()
    passphrase = (cli.cwd / "keys" / "passphrase").read_text().strip()
    secrets.add("key passphrase", passphrase)
    key_material(cli.cwd / "keys", passphrase.encode(), secrets)
    server = start_server(cli, free_port())
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            responses = workflow(http, owner_token, secrets)
            secrets.add("metrics token", metrics_token)
            responses.append(http.get("/metrics", headers={"Authorization": "Bearer wrong-metrics-token-guess"}))
            scraped = http.get("/metrics", headers={"Authorization": f"Bearer {metrics_token}"})
            assert scraped.status_code == 200
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)
    log = server.log.read_text()
    assert "DEBUG" in log, "the server did not log at DEBUG"
    assert len([r for r in responses if r.status_code >= 400]) >= 12, "the wrong moves were not refused"
    assert set(secrets.values) == set(SECRET_KINDS), "a declared kind of secret was never exercised"
    assert secrets.found_in(log) == [], "secrets in the server log"
    assert secrets.found_in(init.stderr) == [], "secrets in init's diagnostics"
    assert secrets.found_in(error_bodies(responses)) == [], "secrets in error bodies"
    assert secrets.found_in(scraped.text) == [], "secrets in the metrics"
    if log_format == "json":
        # stdout (the start-up banner) shares the file; every line the logging setup wrote is one JSON object
        records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        assert len(records) >= len(responses), "fewer JSON log lines than requests"
        decoded = "\n".join(json.dumps(record, ensure_ascii=False) for record in records)
        assert secrets.found_in(decoded) == [], "secrets in the JSON log's decoded values"
        request_ids = {r.headers["x-request-id"] for r in responses}
        logged_ids = {record.get("request_id") for record in records}
        assert request_ids <= logged_ids, "a request without a log line carrying its id"
    print(
        f"\nsearched {len(log.splitlines())} log lines and {len(responses)} responses for "
        f"{sum(map(len, secrets.values.values()))} secret values of {len(SECRET_KINDS)} kinds: none found"
    )


@pytest.fixture
def backend() -> str:
    return "sqlite"


async def test_no_secret_in_in_process_debug_logs_including_sql_parameters(
    app: object, owner_headers: dict[str, str], caplog: pytest.LogCaptureFixture, keys_dir: Path
) -> None:
    secrets = Secrets()
    secrets.add("key passphrase", PASSPHRASE.decode())
    key_material(keys_dir, PASSPHRASE, secrets)
    owner_token = owner_headers["Authorization"].split()[1]
    caplog.set_level(logging.DEBUG)
    for name in ("sqlalchemy.engine", "license_server", "litestar", "httpx", "apscheduler"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            responses = await _async_workflow(http, owner_token, secrets)
    finally:
        for name in ("sqlalchemy.engine", "license_server", "litestar", "httpx", "apscheduler"):
            logging.getLogger(name).setLevel(logging.NOTSET)
    logged = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    assert "SELECT" in logged, "SQL statements were not captured"
    leaks = [
        f"{r.name}: {r.getMessage()[:300]}" for r in caplog.records if secrets.found_in(f"{r.getMessage()} {r.args!r}")
    ]
    assert leaks == []
    assert secrets.found_in(error_bodies(responses)) == []


async def _async_workflow(http: httpx.AsyncClient, owner_token: str, secrets: Secrets) -> list[httpx.Response]:
    """A shorter workflow in process: the log records are captured by pytest rather than a process's output."""
    admin = {"Authorization": f"Bearer {owner_token}"}
    secrets.add("admin token", owner_token)
    seen: list[httpx.Response] = []
    customer = (await http.post("/v1/admin/customers/", json={"name": "C"}, headers=admin)).json()
    issued = (
        await http.post(
            "/v1/admin/licenses/", json={"customer_id": customer["id"], "expires_at": "2035-01-01"}, headers=admin
        )
    ).json()
    secrets.add("license key", issued["key"])
    activated = (await http.post("/v1/activations", json={"license_key": issued["key"], "fingerprint": "h"})).json()
    secrets.add("deployment token", activated["deployment_token"])
    deployment = {"Authorization": f"Bearer {activated['deployment_token']}"}
    seen.append(await http.get("/v1/license", headers=deployment))
    seen.append(
        await http.post("/v1/usage", json={"measured_at": "2026-01-01", "idempotency_key": "k"}, headers=deployment)
    )
    seen.append(await http.post("/v1/activations", json={"license_key": issued["key"], "fingerprint": "h" * 300}))
    seen.append(await http.get("/v1/admin/licenses", headers=deployment))
    seen.append(await http.get("/v1/license", headers={"Authorization": f"Bearer {owner_token}"}))
    hook = (await http.post("/v1/admin/webhooks/", json={"url": "https://example.com/h"}, headers=admin)).json()
    secrets.add("webhook signing secret", hook["secret"])
    credential = await http.post(f"/v1/admin/licenses/{issued['id']}/inner-api/credentials", json={}, headers=admin)
    inner_secret = credential.json()["secret"]
    secrets.add("inner-API secret", inner_secret)
    seen.append(await http.get("/inner/api/info", headers={"Enterprise-Api-Secret-Key": inner_secret}))
    seen.append(await http.get("/inner/api/info", headers={"Enterprise-Api-Secret-Key": inner_secret[:-1]}))
    return seen


# -- file permissions -------------------------------------------------------------------------------------------
def test_init_creates_private_files_0600_and_the_data_directory_0700(cli: Cli) -> None:
    cli.run("init", "--dev")
    keys = cli.cwd / "keys"
    private = [keys / "root" / "root.key", keys / "secret-hashing.key", keys / "passphrase"]
    private += sorted((cli.cwd / "keys" / "issuing").glob("*.key"))
    private += sorted((cli.cwd / "data").glob("license-server.db*"))  # the database, its WAL and shared memory
    assert private[-1].name.startswith("license-server.db")
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((cli.cwd / "data").stat().st_mode) == 0o700


def test_serve_refuses_to_start_with_group_or_world_readable_private_files(cli: Cli) -> None:
    cli.run("init", "--dev")
    keys = cli.cwd / "keys"
    # (The root key is not among them: servers never read it; it lives on the key host.)
    targets = [next((keys / "issuing").glob("*.key")), keys / "secret-hashing.key", keys / "passphrase"]
    for path, mode in zip(targets, [0o640, 0o604, 0o640], strict=True):
        path.chmod(mode)
        result = subprocess.run(
            [LICENSE_SERVER, "serve", "--port", str(free_port())],
            cwd=cli.cwd,
            env=cli.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        path.chmod(0o600)
        assert result.returncode != 0, (path.name, oct(mode))
        assert "chmod 600" in result.stderr + result.stdout, result.stderr
        assert "Traceback" not in result.stderr
