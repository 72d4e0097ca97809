"""What only the edge does for Dify: its own credentials (CLI), license-file swaps, trusted time, local state."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from license_server.cli.main import cli
from license_server.edge.inner_store import _file_terms, _served_status
from license_server.edge.runtime import EdgeLicenseState
from license_server.lifecycle.status import Reason, Status, StatusResult
from license_server.offline import files
from tests.inner_api.conftest import SECRET_HEADER, Dify, EdgeTarget, Licensed


@pytest.fixture
def edge(edge_target: EdgeTarget) -> EdgeTarget:
    return edge_target


async def _cli(*args: str) -> Any:
    """The edge CLI, as the operator runs it (in a thread: it runs its own event loop)."""
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["edge", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _database_bytes(data_dir: Path) -> bytes:
    """edge.db and its write-ahead log, if any: everything the edge stores."""
    return b"".join(path.read_bytes() for path in data_dir.glob("edge.db*"))


def _data_dir(edge: EdgeTarget, licensed: Licensed) -> str:
    return str(edge.edges[licensed.license_id].runtime.data_dir)


async def test_credentials_from_the_cli_are_shown_once_stored_hashed_and_revocable(edge: EdgeTarget) -> None:
    licensed = await edge.license()
    data_dir = _data_dir(edge, licensed)
    created = await _cli("credentials", "create", "--label", "dify-prod", "--data-dir", data_dir)
    secret = created["secret"]
    assert secret.startswith("lsia_")
    database = _database_bytes(Path(data_dir))
    assert secret.encode() not in database
    assert hashlib.sha256(secret.encode()).hexdigest().encode() in database

    dify = Dify(edge, Licensed(license_id=licensed.license_id, secret=secret))
    assert (await dify.get("/info")).status_code == 200  # accepted at once by the running edge
    listed = (await _cli("credentials", "list", "--data-dir", data_dir))["items"]
    mine = next(item for item in listed if item["id"] == created["id"])
    assert (mine["label"], mine["hint"], mine["revoked_at"]) == ("dify-prod", secret[-4:], None)
    assert all("secret" not in item for item in listed)

    revoked = await _cli("credentials", "revoke", created["id"], "--data-dir", data_dir)
    assert revoked["revoked_at"] is not None
    refused = await dify.get("/info")
    assert refused.status_code == 401
    assert refused.json()["message"]
    assert (await Dify(edge, licensed).get("/info")).status_code == 200  # the other credential still works


def test_the_credentials_cli_refuses_a_directory_that_is_not_an_edges(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["edge", "credentials", "create", "--data-dir", str(tmp_path / "typo"), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.output)["error"] == "not_an_edge"
    assert not (tmp_path / "typo").exists()


async def test_workspaces_apps_and_default_workspace_are_managed_from_the_cli(edge: EdgeTarget) -> None:
    licensed = await edge.license(terms={"workspace_policy": {"allow_member_invite": True}})
    data_dir, dify = _data_dir(edge, licensed), Dify(edge, licensed)
    await _cli(
        "workspaces", "set", "ws-1", "--no-allow-member-invite", "--allow-owner-transfer", "--data-dir", data_dir
    )
    permission = (await dify.get("/workspaces/ws-1/permission")).json()["permission"]
    assert (permission["allowMemberInvite"], permission["allowOwnerTransfer"]) == (False, True)
    assert [row["workspace_id"] for row in (await _cli("workspaces", "list", "--data-dir", data_dir))["items"]] == [
        "ws-1"
    ]
    assert (await _cli("workspaces", "clear", "ws-1", "--data-dir", data_dir))["removed"] is True
    assert (await dify.get("/workspaces/ws-1/permission")).json()["permission"]["allowMemberInvite"] is True

    shown = await _cli("apps", "set-mode", "app-1", "sso_verified", "--data-dir", data_dir)
    assert shown == {"app_id": "app-1", "access_mode": "sso_verified", "allowed_users": []}
    assert (await dify.get("/webapp/access-mode/id", params={"appId": "app-1"})).json() == {
        "accessMode": "sso_verified"
    }
    await _cli("apps", "set-mode", "app-1", "private", "--data-dir", data_dir)
    await _cli("apps", "allow", "app-1", "user-1", "user-2", "--data-dir", data_dir)
    allowed = await dify.post("/webapp/permission/batch", {"userId": "user-2", "appIds": ["app-1"]})
    assert allowed.json() == {"permissions": {"app-1": True}}
    await _cli("apps", "disallow", "app-1", "user-2", "--data-dir", data_dir)
    refused = await dify.post("/webapp/permission/batch", {"userId": "user-2", "appIds": ["app-1"]})
    assert refused.json() == {"permissions": {"app-1": False}}

    workspace = str(uuid.uuid4())
    assert (await _cli("default-workspace", "set", workspace, "--data-dir", data_dir)) == {
        "default_workspace_id": workspace
    }
    joined = await dify.post("/default-workspace/members", {"account_id": str(uuid.uuid4())})
    assert joined.json()["workspaceId"] == workspace
    bad = await asyncio.to_thread(
        CliRunner().invoke, cli, ["edge", "default-workspace", "set", "not-a-uuid", "--data-dir", data_dir, "--json"]
    )
    assert (bad.exit_code, json.loads(bad.output)["error"]) == (1, "validation_error")


async def test_a_renewed_file_dropped_in_place_changes_info_and_a_refused_one_does_not(edge: EdgeTarget) -> None:
    licensed = await edge.license(terms={"branding": {"application_title": "Before"}})
    dify = Dify(edge, licensed)
    assert (await dify.info())["Branding"]["applicationTitle"] == "Before"
    await edge.update_terms(licensed, {"branding": {"application_title": "After"}})
    assert (await dify.info())["Branding"]["applicationTitle"] == "After"

    served = edge.edges[licensed.license_id]
    token = files.dearmor(served.license_path.read_text())
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["branding"]["application_title"] = "Forged"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    served.license_path.write_text(files.armor(f"{header}.{forged}.{signature}", claims))
    body = await dify.info()  # the forged file is refused: the verified one stays in service
    assert (body["Branding"]["applicationTitle"], body["License"]["status"]) == ("After", "active")
    assert served.runtime.file_error is not None


async def test_a_clock_set_back_makes_dify_log_users_out_until_it_is_right(edge: EdgeTarget) -> None:
    dify = await _dify(edge)
    edge.clock.advance(timedelta(days=2))
    assert (await dify.info())["License"]["status"] == "active"
    edge.clock.advance(-timedelta(days=1))
    assert (await dify.info())["License"]["status"] == "lost"  # CLOCK_ROLLBACK: Dify forces a logout
    edge.clock.advance(timedelta(days=1))
    assert (await dify.info())["License"]["status"] == "active"


async def test_a_suspended_license_renewed_into_the_edge_logs_users_out(edge: EdgeTarget) -> None:
    licensed = await edge.license()
    dify = Dify(edge, licensed)
    await edge.suspend(licensed)
    assert (await dify.info())["License"]["status"] == "inactive"


async def test_sso_change_times_survive_an_edge_restart(edge: EdgeTarget) -> None:
    licensed = await edge.license()
    issued_at = edge.clock()
    first = await Dify(edge, licensed).get("/sso/app/last-update-time")
    runtime = edge.edges[licensed.license_id].runtime
    await runtime.close()
    edge.clock.advance(timedelta(hours=3))
    await runtime.start()
    again = await Dify(edge, licensed).get("/sso/app/last-update-time")
    assert first.json() == again.json() == issued_at.isoformat()


async def test_concurrent_joins_of_one_account_record_it_once(edge: EdgeTarget) -> None:
    licensed = await edge.license()
    await edge.set_default_workspace(licensed, str(uuid.uuid4()))
    dify, account = Dify(edge, licensed), str(uuid.uuid4())
    answers = await asyncio.gather(
        *(dify.post("/default-workspace/members", {"account_id": account}) for _ in range(8))
    )
    messages = [answer.json()["message"] for answer in answers]
    assert all(answer.json()["joined"] for answer in answers)
    assert messages.count("joined the default workspace") == 1


def test_an_unreadable_license_file_is_served_as_inactive_never_none() -> None:
    """Dify lets ``none`` through; a verified file the edge cannot read must log users out instead."""
    from datetime import UTC, datetime

    now = datetime(2026, 6, 1, tzinfo=UTC)
    state = EdgeLicenseState({"license_id": "x"}, StatusResult(Status.NONE, Reason.NO_LICENSE), "t", '"e"', now)
    assert _served_status(state, _file_terms(state)) is Status.INACTIVE


async def _dify(edge: EdgeTarget) -> Dify:
    return Dify(edge, await edge.license())


async def test_a_wrong_secret_is_401_on_the_edge_with_a_message(edge: EdgeTarget) -> None:
    await edge.license()
    answer = await edge.client.get("/inner/api/info", headers={SECRET_HEADER: "lsia_" + "x" * 43})
    assert answer.status_code == 401
    assert answer.json()["message"]
