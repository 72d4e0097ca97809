"""The fallback load generator, for machines without wrk: asyncio over raw keep-alive sockets, in its own process.

Reads a JSON spec on stdin ({url, connections, seconds, tag, requests: [{method, path, headers, body}]}) and prints
one ``BENCH_JSON {...}`` line in the same form as the wrk script. Pure Python needs most of a core to keep a fast
server busy, so on a 2-core machine its figures understate the server: the benchmark prints the CPU it used.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

RESULT_PREFIX = "BENCH_JSON "
UNIQUE = "{n}"


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    socket_errors: int = 0


def encode(request: dict[str, Any], host: str, body: str | None) -> bytes:
    lines = [f"{request['method']} {request['path']} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in request["headers"].items()]
    payload = (body or "").encode()
    if body is not None:
        lines.append(f"Content-Length: {len(payload)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in header_lines:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return int(status_line.split(" ", 2)[1])


async def connection(
    host: str, port: int, next_request: Any, deadline: float, tally: Tally, connect_lock: asyncio.Semaphore
) -> None:
    async with connect_lock:
        reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            payload: bytes = next_request()
            started = time.perf_counter()
            writer.write(payload)
            try:
                status = await read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                tally.socket_errors += 1
                return
            tally.latencies.append(time.perf_counter() - started)
            tally.statuses[status] += 1
    finally:
        writer.close()


async def generate(spec: dict[str, Any]) -> dict[str, Any]:
    parts = urlsplit(spec["url"])
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests: list[dict[str, Any]] = spec["requests"]
    fixed = [encode(r, f"{host}:{port}", r["body"]) for r in requests]
    counter, cycle = itertools.count(1), itertools.cycle(range(len(requests)))

    def next_request() -> bytes:
        index = next(cycle)
        body = requests[index]["body"]
        if body is None or UNIQUE not in body:
            return fixed[index]
        unique = f"{spec['tag']}-1-{next(counter)}"
        return encode(requests[index], f"{host}:{port}", body.replace(UNIQUE, unique))

    tally = Tally()
    started = time.perf_counter()
    deadline = started + float(spec["seconds"])
    connect_lock = asyncio.Semaphore(8)
    await asyncio.gather(
        *(connection(host, port, next_request, deadline, tally, connect_lock) for _ in range(spec["connections"]))
    )
    elapsed = time.perf_counter() - started
    latencies = sorted(tally.latencies) or [0.0]

    def percentile(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000

    return {
        "requests": len(tally.latencies),
        "seconds": elapsed,
        "p50_ms": percentile(50),
        "p90_ms": percentile(90),
        "p99_ms": percentile(99),
        "socket_errors": tally.socket_errors,
        "statuses": {str(k): v for k, v in tally.statuses.items()},
    }


def main() -> None:
    spec = json.load(sys.stdin)
    print(RESULT_PREFIX + json.dumps(asyncio.run(generate(spec))))


if __name__ == "__main__":
    main()
