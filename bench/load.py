"""HTTP load: wrk when it is installed (``apt-get install wrk``), else the asyncio generator in bench/loadgen.py.

Both keep ``connections`` keep-alive connections busy for ``seconds``, cycle through a list of requests (every ``{n}``
in a body is replaced by a value unique to the run and request), count response statuses and report latency
percentiles. Either runs in its own process; its CPU use and the server's are measured over the same window.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, CpuMeter, MachineMeter

UNIQUE = "{n}"
RESULT_PREFIX = "BENCH_JSON "


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: str | None = None


@dataclass(frozen=True)
class LoadResult:
    tool: str
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    statuses: dict[int, int]
    socket_errors: int
    generator_cpu: float = 0.0  # share of one core
    server_cpu: float = 0.0
    other_cpu: float = 0.0  # cores busy with anything else on the machine meanwhile

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def count(self, *statuses: int) -> int:
        return sum(self.statuses.get(status, 0) for status in statuses)

    def status_summary(self) -> str:
        total = sum(self.statuses.values()) or 1
        shares = ", ".join(f"{status}: {n / total:.1%}" for status, n in sorted(self.statuses.items()))
        errors = f", socket errors {self.socket_errors}" if self.socket_errors else ""
        return shares + errors


def load_tool() -> str:
    """``BENCH_LOADGEN=python`` forces the fallback generator even where wrk is installed."""
    if os.environ.get("BENCH_LOADGEN", "wrk") == "wrk" and shutil.which("wrk"):
        return "wrk"
    return "python"


def _lua_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def _lua_request(request: Request) -> str:
    headers = ", ".join(f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in request.headers.items())
    fields = [
        f"method = {_lua_string(request.method)}",
        f"path = {_lua_string(request.path)}",
        f"headers = {{{headers}}}",
    ]
    if request.body is not None and UNIQUE in request.body:
        fields.append(f"template = {_lua_string(request.body)}")
    elif request.body is not None:
        fields.append(f"body = {_lua_string(request.body)}")
    return "{" + ", ".join(fields) + "}"


# LuaJIT refuses a function with more than 65,536 constants, and wrk then runs without the script's functions (its
# default ``GET /``, no ``done()`` result): the list of requests is built in parts, each a function of its own.
SPECS_PER_PART = 2000
WRK_SCRIPT = """
local specs = {}
local function add(part) for _, spec in ipairs(part) do table.insert(specs, spec) end end
%(specs)s
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  tag = args[1] or "run"
  counter, index, statuses, fixed = 0, 0, {}, {}
  for i, spec in ipairs(specs) do
    if spec.template == nil then fixed[i] = wrk.format(spec.method, spec.path, spec.headers, spec.body) end
  end
end

function request()
  index = index %% #specs + 1
  local spec = specs[index]
  if fixed[index] then return fixed[index] end
  counter = counter + 1
  local unique = (tag .. "-" .. tid .. "-" .. counter):gsub("%%%%", "%%%%%%%%")
  local body = spec.template:gsub("{n}", unique)
  return wrk.format(spec.method, spec.path, spec.headers, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do merged[status] = (merged[status] or 0) + n end
  end
  local parts = {}
  for status, n in pairs(merged) do table.insert(parts, string.format('"%%d": %%d', status, n)) end
  local e = summary.errors
  io.write(string.format(
    '%(prefix)s{"requests": %%d, "seconds": %%f, "p50_ms": %%f, "p90_ms": %%f, "p99_ms": %%f, ' ..
    '"socket_errors": %%d, "statuses": {%%s}}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(90) / 1e3,
    latency:percentile(99) / 1e3, e.connect + e.read + e.write + e.timeout, table.concat(parts, ", ")))
end
"""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _parse(tool: str, output: str) -> LoadResult:
    for line in output.splitlines():
        if line.startswith(RESULT_PREFIX):
            raw: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            raw["statuses"] = {int(k): int(v) for k, v in raw["statuses"].items()}
            return LoadResult(tool=tool, **raw)
    raise RuntimeError(f"{tool} printed no result:\n{output}")


def _run_once(tool: str, port: int, requests: list[Request], connections: int, seconds: float, tag: str) -> LoadResult:
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as directory:
        if tool == "wrk":
            script = Path(directory) / "load.lua"
            parts = [requests[i : i + SPECS_PER_PART] for i in range(0, len(requests), SPECS_PER_PART)]
            specs = "\n".join(
                "add((function() return {" + ",\n  ".join(_lua_request(r) for r in part) + "} end)())" for part in parts
            )
            script.write_text(WRK_SCRIPT % {"specs": specs, "prefix": RESULT_PREFIX})
            command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "--latency"]
            command += ["-s", str(script), url, "--", tag]
            stdin = None
        else:
            command = [sys.executable, "-m", "bench.loadgen"]
            spec = {"url": url, "connections": connections, "seconds": seconds, "tag": tag}
            stdin = json.dumps({**spec, "requests": [asdict(r) for r in requests]})
        completed = subprocess.run(
            command, input=stdin, capture_output=True, text=True, cwd=REPO_ROOT, check=False, timeout=seconds + 60
        )
    if completed.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({completed.returncode}): {completed.stdout}{completed.stderr}")
    return _parse(tool, completed.stdout)


def run_load(
    *,
    port: int,
    server_pid: int,
    requests: list[Request],
    connections: int,
    seconds: float,
    warmup: float,
    tag: str,
) -> LoadResult:
    """A warm-up run (discarded), then the measured run with the CPU both processes used during it."""
    tool = load_tool()
    if warmup > 0:
        _run_once(tool, port, requests, connections, warmup, f"{tag}-warmup")
    server, machine = CpuMeter(server_pid), MachineMeter()
    generator_before, started = _children_cpu(), time.monotonic()
    result = _run_once(tool, port, requests, connections, seconds, tag)
    wall = time.monotonic() - started
    generator = (_children_cpu() - generator_before) / wall
    server_cpu, busy = server.share(), machine.cores()
    other = max(0.0, busy - server_cpu - generator)
    return replace(result, generator_cpu=generator, server_cpu=server_cpu, other_cpu=other)
