"""The ``license-server`` command line as scripts use it: the --json keys are a contract."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import LICENSE_SERVER, Cli, free_port, start_server

pytestmark = pytest.mark.slow


def test_init_prints_the_owner_token_once_and_never_overwrites_keys(cli: Cli) -> None:
    first = cli.json("init", "--dev")
    assert first["admin_token"].startswith("lsat_")
    keys = {p.name: p.read_bytes() for p in (cli.cwd / "keys").rglob("*") if p.is_file()}
    second = cli.json("init", "--dev")
    assert second == {"admin_token": None}
    assert {p.name: p.read_bytes() for p in (cli.cwd / "keys").rglob("*") if p.is_file()} == keys
    assert (cli.cwd / "data" / "license-server.db").exists()
    for private in ("root/root.key", "secret-hashing.key", "passphrase"):
        assert stat.S_IMODE((cli.cwd / "keys" / private).stat().st_mode) == 0o600
    assert b"BEGIN ENCRYPTED PRIVATE KEY" in keys["root.key"]
    # The development root stands in for the key host: its own directory, never the server's keys.
    assert not (cli.cwd / "keys" / "root.key").exists()
    assert stat.S_IMODE((cli.cwd / "keys" / "root").stat().st_mode) == 0o700


def test_issue_document_and_verify_through_the_cli(cli: Cli) -> None:
    cli.run("init", "--dev")
    token = cli.json("tokens", "create", "--role", "issuer")
    assert token["token"].startswith("lsat_")
    customer = cli.json("customers", "create", "--name", "Acme Corp")
    plan = cli.json("plans", "create", "--code", "enterprise", "--name", "Enterprise", "--max-activations", "3")
    assert plan["terms"] == {"max_activations": 3}
    issued = cli.json(
        "licenses",
        "issue",
        "--customer",
        customer["id"],
        "--expires",
        "2030-12-31",
        "--plan",
        "enterprise",
        "--workspaces",
        "10",
        "--max-activations",
        "5",
    )
    assert {"id", "key", "status"} <= set(issued)
    assert issued["status"] == "inactive"
    assert issued["effective_terms"]["max_activations"] == 5
    cli.run("licenses", "document", issued["id"], "--out", "license.jws")
    valid = cli.run("verify", "license.jws", "--root-key", "keys/root.pub")
    assert valid.stdout.startswith("VALID")
    claims = json.loads(cli.run("verify", "license.jws", "--root-key", "keys/root.pub", "--json").stdout)
    assert claims["valid"] is True
    assert claims["claims"]["license_id"] == issued["id"]
    assert claims["claims"]["limits"]["workspaces"] == {"enabled": True, "limit": 10, "used": 0, "over_limit": False}
    assert issued["key"] not in (cli.cwd / "license.jws").read_text()


def test_verify_exits_nonzero_with_a_stable_reason(cli: Cli) -> None:
    cli.run("init", "--dev")
    customer = cli.json("customers", "create", "--name", "Acme Corp")
    issued = cli.json("licenses", "issue", "--customer", customer["id"], "--expires", "2030-12-31")
    cli.run("licenses", "document", issued["id"], "--out", "license.jws")
    document = (cli.cwd / "license.jws").read_text().strip()
    header, payload, signature = document.split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    (cli.cwd / "tampered.jws").write_text(f"{header}.{payload}.{flipped}\n")
    result = cli.run("verify", "tampered.jws", "--root-key", "keys/root.pub", "--json", check=False)
    assert result.returncode == 1
    assert json.loads(result.stdout) == {
        "valid": False,
        "reason": "BAD_SIGNATURE",
        "detail": "signature does not match",
    }
    (cli.cwd / "garbage.jws").write_text("not a document")
    human = cli.run("verify", "garbage.jws", "--root-key", "keys/root.pub", check=False)
    assert human.returncode == 1
    assert human.stderr.startswith("INVALID MALFORMED")


def test_lifecycle_actions_from_the_cli(cli: Cli) -> None:
    cli.run("init", "--dev")
    customer = cli.json("customers", "create", "--name", "Acme Corp")
    license_id = cli.json("licenses", "issue", "--customer", customer["id"], "--expires", "2030-12-31")["id"]
    assert cli.json("licenses", "suspend", license_id, "--reason", "unpaid")["status_reason"] == "SUSPENDED"
    assert cli.json("licenses", "reinstate", license_id)["status_reason"] == "NOT_ACTIVATED"
    assert cli.json("licenses", "renew", license_id, "--expires", "2031-06-30")["expires_at"] == "2031-06-30T00:00:00Z"
    assert cli.json("licenses", "rotate-key", license_id)["key"].startswith("LSK-")
    assert cli.json("licenses", "revoke", license_id)["status_reason"] == "REVOKED"
    refused = cli.run("licenses", "reinstate", license_id, "--json", check=False)
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["error"] == "license_revoked"
    listed = cli.json("licenses", "list", "--status", "inactive")
    assert [item["id"] for item in listed["items"]] == [license_id]


def test_bad_cli_input_is_a_clean_error_not_a_traceback(cli: Cli) -> None:
    cli.run("init", "--dev")
    customer = cli.json("customers", "create", "--name", "Acme Corp")
    for args in (
        ("licenses", "issue", "--customer", customer["id"], "--expires", "next year"),
        ("licenses", "issue", "--customer", customer["id"], "--expires", "2030-01-01", "--max-activations", "-2"),
        ("licenses", "issue", "--customer", customer["id"], "--expires", "2030-01-01", "--plan", "missing"),
        ("customers", "create", "--name", ""),
        ("licenses", "show", "00000000-0000-4000-8000-000000000000"),
    ):
        result = cli.run(*args, check=False)
        assert result.returncode != 0, args
        assert "Traceback" not in result.stderr + result.stdout, args


def test_keys_rotate_list_retire_and_export(cli: Cli) -> None:
    """The key host makes bundles and lists (here keys/root, as `init --dev` leaves it); the server imports them."""
    cli.run("init", "--dev")
    first = cli.json("keys", "list")["items"][0]["kid"]
    second = cli.json("keys", "rotate", "--out", "bundle.json")["kid"]
    assert stat.S_IMODE((cli.cwd / "bundle.json").stat().st_mode) == 0o600
    assert cli.json("keys", "import", "bundle.json") == {"kid": second, "signer": True}
    states = {k["kid"]: k["signer"] for k in cli.json("keys", "list")["items"]}
    assert states == {first: False, second: True}
    refused = cli.run("keys", "retire", second, "--out", "refused.jws", check=False)
    assert refused.returncode == 1
    assert not (cli.cwd / "refused.jws").exists()
    cli.run("keys", "retire", first, "--out", "revocations-1.jws")
    assert cli.json("keys", "import", "revocations-1.jws") == {"sequence": 1, "retired": [first]}
    files = cli.json("keys", "export-public", "--out", "public")["files"]
    assert sorted(Path(f).name for f in files) == ["jwks.json", "revocations.jws", "root.pub"]
    jwks = json.loads((cli.cwd / "public" / "jwks.json").read_text())
    assert [k["kid"] for k in jwks["keys"]] == [second]


def test_serve_refuses_unencrypted_or_exposed_keys(cli: Cli) -> None:
    cli.run("init", "--dev")
    root_key = next((cli.cwd / "keys" / "issuing").glob("*.key"))
    os.chmod(root_key, 0o644)
    exposed = subprocess.run(
        [LICENSE_SERVER, "serve", "--port", str(free_port())],
        cwd=cli.cwd,
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert exposed.returncode != 0
    assert "chmod 600" in exposed.stderr
    os.chmod(root_key, 0o600)
    (cli.cwd / "keys" / "passphrase").write_text("wrong passphrase\n")
    wrong = subprocess.run(
        [LICENSE_SERVER, "serve", "--port", str(free_port())],
        cwd=cli.cwd,
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert wrong.returncode != 0
    assert "wrong passphrase" in wrong.stderr
    assert "wrong passphrase\n" not in wrong.stderr.replace("wrong passphrase or", "")


def test_unencrypted_keys_need_the_explicit_development_flag(tmp_path: Path) -> None:
    from tests.e2e.conftest import clean_env

    dev = Cli(cwd=tmp_path, env=clean_env(LICENSE_SERVER_ALLOW_UNENCRYPTED_KEYS="1"))
    refused_init = dev.run("init", check=False)  # production init: no keys have been imported yet
    assert refused_init.returncode == 1
    assert "keys import" in refused_init.stderr
    # The production procedure, on one machine: root on the "key host", bundle imported on the "server".
    dev.run("keys", "root", "init", "--root-dir", "key-host")
    dev.run("keys", "rotate", "--root-dir", "key-host", "--out", "bundle.json")
    dev.run("keys", "import", "bundle.json")
    dev.run("init")
    assert b"BEGIN PRIVATE KEY" in (tmp_path / "key-host" / "root.key").read_bytes()
    assert b"BEGIN PRIVATE KEY" in next((tmp_path / "keys" / "issuing").glob("*.key")).read_bytes()
    strict = Cli(cwd=tmp_path, env=clean_env())
    refused = strict.run("keys", "list", check=False)
    assert refused.returncode == 1
    assert "not encrypted" in refused.stderr


def test_serve_runs_without_the_root_private_key(cli: Cli) -> None:
    """Key custody: a server signs and publishes with no root private key on the machine at all."""
    cli.run("init", "--dev")
    (cli.cwd / "keys" / "root" / "root.key").unlink()
    assert not list(cli.cwd.rglob("root.key"))
    server = start_server(cli, free_port())
    try:
        customer = cli.json("customers", "create", "--name", "Acme Corp")
        issued = cli.json("licenses", "issue", "--customer", customer["id"], "--expires", "2030-01-01")
        token = cli.json("tokens", "create", "--role", "admin", "--name", "t")["token"]
        document = httpx.get(
            f"{server.url}/v1/admin/licenses/{issued['id']}/document", headers={"Authorization": f"Bearer {token}"}
        )
        assert document.status_code == 200
        (cli.cwd / "doc.jws").write_text(document.text)
        assert cli.json("verify", "doc.jws", "--root-key", "keys/root.pub")["valid"] is True
        assert httpx.get(f"{server.url}/health/ready").json()["checks"]["signing_key"] == "ok"
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)
