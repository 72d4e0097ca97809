"""Hosted billing's hot calls over HTTP against a bare Litestar JSON route served the same way, in the same run.

Platforms call the limits report and the read-only check on every request, reserve before every run and commit
after it. 8 accounts of one platform on a plan with monthly quotas (made with the CLI, as staff would) are asked over
32 keep-alive connections with the platform secret, round-robin. Targets (issue 12): limits and check >= 60 % of the
bare route's requests/s; reserve and commit (every write committed to the database before it is answered) >= 40 %,
on SQLite and on PostgreSQL.

Commit names its reservation in the path, and the load generators cycle through a fixed list of requests: so a
reserve run first holds quota under request ids the generator numbers predictably (``held-<thread>-<n>``), and the
commit runs walk a list of those reservations' commit paths, the warm-up and the measured run on disjoint parts of it.
A run that got to the end of its list would start committing again (replays, answered from the first commit): it is
flagged, never counted as fresh commits.

Event ingestion (bench/billing_events.py) and the credits rollover (bench/billing_rollover.py) are reported with it.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench import billing_events, billing_rollover
from bench.common import Report, Row, percent, print_report, rate
from bench.load import LoadResult, Request, load_tool, run_load
from bench.poll import CONNECTIONS, SECONDS, WARMUP_SECONDS, _cpu, _load, _server_software
from bench.server import LicenseServerData, bare_server, cli, postgres_database, postgres_unavailable, product_server

ACCOUNTS = 8
KEY = "app_invocation.max_monthly_count"
READ_TARGET, WRITE_TARGET = 0.6, 0.4
# Reservations held for the commit runs: for this long at reserve's rate. Commit does a little more work than reserve,
# so this leaves the runs room; a run that still reached the end of its list is flagged.
HOLD_SECONDS = 2.5 * (WARMUP_SECONDS + SECONDS)
HELD_TAG = "held"


def _platform(data: LicenseServerData) -> str:
    catalogue = {
        "plans": [
            {"code": "bench", "name": "Bench", "billing": {"quotas": {KEY: {"kind": "monthly", "limit": 10**12}}}}
        ]
    }
    path = data.directory / "catalogue.json"
    path.write_text(json.dumps(catalogue))
    cli(data.env, "billing", "plans", "import", str(path))
    return str(
        cli(data.env, "billing", "platforms", "create", "--name", "Bench Cloud", "--default-plan", "bench")["secret"]
    )


def _check(base_url: str, secret: str) -> None:
    with httpx.Client(base_url=base_url, timeout=10, headers={"Authorization": f"Bearer {secret}"}) as client:
        for n in range(ACCOUNTS):
            answer = client.get(f"/v1/billing/accounts/org-{n}/limits")
            if answer.status_code != 200 or answer.json()["data"]["plan"] != "bench":
                raise RuntimeError(f"limits answered {answer.status_code}: {answer.text[:300]}")


def _row(label: str, result: LoadResult, bare: LoadResult, target: float, *, trusted: bool = True) -> Row:
    share = result.rps / bare.rps
    return Row(
        f"{label}, {CONNECTIONS} conns",
        rate(result.rps, " req/s"),
        "bare Litestar `GET /bare`",
        rate(bare.rps, " req/s"),
        f"{percent(share)} (target ≥ {percent(target)})",
        share >= target and trusted,
    )


@dataclass
class WriteRuns:
    reserve: LoadResult
    commit: LoadResult
    commit_listed: int  # commit paths in the measured run's list: more requests than this were replays


def _reserve_requests(auth: dict[str, str]) -> list[Request]:
    body = json.dumps({"key": KEY, "amount": 1, "request_id": "{n}", "ttl_seconds": 3600})
    headers = {**auth, "Content-Type": "application/json"}
    return [Request("POST", f"/v1/billing/accounts/org-{n}/usage/reserve", headers, body) for n in range(ACCOUNTS)]


def _commit_requests(auth: dict[str, str], first: int, last: int) -> list[Request]:
    """Commit paths of the reservations the held run made: its n-th request (from 1) reserved
    ``held-1-n`` on account ``(n - 1) % ACCOUNTS`` (one generator thread, requests in order)."""
    headers = {**auth, "Content-Type": "application/json"}
    body = json.dumps({"actual": 1})
    return [
        Request(
            "POST",
            f"/v1/billing/accounts/org-{(n - 1) % ACCOUNTS}/usage/reservations/{HELD_TAG}-1-{n}/commit",
            headers,
            body,
        )
        for n in range(first, last + 1)
    ]


def _writes(port: int, pid: int, auth: dict[str, str], label: str) -> WriteRuns:
    reserve = _load(port, pid, _reserve_requests(auth), f"reserve-{label}")
    held = run_load(
        port=port,
        server_pid=pid,
        requests=_reserve_requests(auth),
        connections=CONNECTIONS,
        seconds=HOLD_SECONDS,
        warmup=0,
        tag=HELD_TAG,
    )
    # The last requests sent may not have been answered (the run stopped with them in flight): left out.
    made = held.count(201) - CONNECTIONS
    warmup_share = WARMUP_SECONDS / (WARMUP_SECONDS + SECONDS)
    split = int(made * warmup_share * 0.9)
    run_load(
        port=port,
        server_pid=pid,
        requests=_commit_requests(auth, 1, split),
        connections=CONNECTIONS,
        seconds=WARMUP_SECONDS,
        warmup=0,
        tag=f"commit-{label}-warmup",
    )
    measured = _commit_requests(auth, split + 1, made)
    commit = run_load(
        port=port,
        server_pid=pid,
        requests=measured,
        connections=CONNECTIONS,
        seconds=SECONDS,
        warmup=0,
        tag=f"commit-{label}",
    )
    return WriteRuns(reserve, commit, len(measured))


def _sqlite_runs() -> tuple[LoadResult, LoadResult, LoadResult, WriteRuns]:
    with tempfile.TemporaryDirectory(prefix="bench-billing-") as directory:
        data = LicenseServerData.create(Path(directory), 0)
        secret = _platform(data)
        auth = {"Authorization": f"Bearer {secret}"}
        with product_server(data) as product, bare_server(data.env, data.directory) as bare:
            _check(product.base_url, secret)
            bare_result = _load(bare.port, bare.pid, [Request("GET", "/bare", {})], "bare")
            limits = _load(
                product.port,
                product.pid,
                [Request("GET", f"/v1/billing/accounts/org-{n}/limits", auth) for n in range(ACCOUNTS)],
                "limits",
            )
            check = _load(
                product.port,
                product.pid,
                [Request("GET", f"/v1/billing/accounts/org-{n}/limits/{KEY}/check", auth) for n in range(ACCOUNTS)],
                "check",
            )
            writes = _writes(product.port, product.pid, auth, "sqlite")
    return bare_result, limits, check, writes


def _postgres_runs() -> WriteRuns:
    with (
        tempfile.TemporaryDirectory(prefix="bench-billing-pg-") as directory,
        postgres_database("bench_billing") as url,
    ):
        data = LicenseServerData.create(Path(directory), 0, database_url=url)
        secret = _platform(data)
        auth = {"Authorization": f"Bearer {secret}"}
        with product_server(data) as product:
            _check(product.base_url, secret)
            return _writes(product.port, product.pid, auth, "postgres")


def _write_rows(backend: str, writes: WriteRuns, bare: LoadResult) -> tuple[list[Row], list[str]]:
    replayed = writes.commit.requests > writes.commit_listed
    rows = [
        _row(f"billing `POST …/usage/reserve` ({backend}, durable)", writes.reserve, bare, WRITE_TARGET),
        _row(
            f"billing `POST …/reservations/{{id}}/commit` ({backend}, durable)",
            writes.commit,
            bare,
            WRITE_TARGET,
            trusted=not replayed,
        ),
    ]
    notes = [
        f"billing ({backend}): p99 ms — reserve {writes.reserve.p99_ms:.1f}, commit {writes.commit.p99_ms:.1f}; "
        f"CPU — reserve: {_cpu(writes.reserve)}; commit: {_cpu(writes.commit)}; statuses — reserve: "
        f"{writes.reserve.status_summary()}; commit: {writes.commit.status_summary()}."
    ]
    if replayed:
        notes.append(
            f"**billing ({backend}): the commit run reached the end of its {writes.commit_listed:,} reservations** "
            "and went on with replays: its figure is not one of fresh commits."
        )
    for label, result in (("reserve", writes.reserve), ("commit", writes.commit)):
        if result.count(201) < 0.99 * sum(result.statuses.values()) or result.socket_errors:
            notes.append(f"**billing ({backend}): suspicious** — the {label} run did not answer 201 throughout.")
    return rows, notes


def run_http() -> Report:
    bare, limits, check, sqlite = _sqlite_runs()
    rows = [
        _row("billing `GET …/limits`", limits, bare, READ_TARGET),
        _row("billing `GET …/limits/{key}/check`", check, bare, READ_TARGET),
    ]
    notes = [
        f"billing: load by {'wrk' if load_tool() == 'wrk' else 'bench/loadgen.py (asyncio)'} with {CONNECTIONS} "
        f"keep-alive connections, {WARMUP_SECONDS:g}s warm-up then {SECONDS:g}s measured; {ACCOUNTS} accounts "
        f"round-robin; served by {_server_software()}. Commit walks reservations held by a reserve run beforehand; "
        "the PostgreSQL rows are judged against the SQLite run's bare route (the same machine, minutes apart).",
        f"billing: statuses — limits: {limits.status_summary()}; check: {check.status_summary()}; bare: "
        f"{bare.status_summary()}; p99 ms — limits {limits.p99_ms:.1f}, check {check.p99_ms:.1f}, bare "
        f"{bare.p99_ms:.1f}; CPU — bare: {_cpu(bare)}; limits: {_cpu(limits)}; check: {_cpu(check)}.",
    ]
    more_rows, more_notes = _write_rows("SQLite", sqlite, bare)
    rows += more_rows
    notes += more_notes
    unavailable = postgres_unavailable()
    if unavailable:
        notes.append(f"**billing: PostgreSQL rows not run** — {unavailable}.")
    else:
        more_rows, more_notes = _write_rows("PostgreSQL", _postgres_runs(), bare)
        rows += more_rows
        notes += more_notes
    for label, result in (("limits", limits), ("check", check)):
        if result.count(200) < 0.99 * sum(result.statuses.values()) or result.socket_errors:
            notes.append(f"**billing: suspicious** — the {label} run did not answer 200 throughout.")
    runs = [("limits", limits), ("check", check), ("reserve", sqlite.reserve), ("commit", sqlite.commit)]
    for label, result in runs:
        if result.other_cpu > 0.25:
            notes.append(
                f"**billing: the machine was busy with other work during the {label} run** "
                f"({result.other_cpu:.0%} of a core outside the benchmark): absolute figures are depressed."
            )
    return Report(rows, notes)


def run() -> Report:
    report = Report()
    for part in (run_http, billing_events.run, billing_rollover.run):
        result = part()
        report.rows += result.rows
        report.notes += result.notes
    return report


def main() -> None:
    print_report(run())


if __name__ == "__main__":
    main()
