"""Run inside a network namespace of its own (``unshare -n``): only a loopback interface, no route anywhere else.

Brings loopback up, proves the outside is unreachable, starts ``license-server serve`` on 127.0.0.1, opens the API
docs pages in the system Chromium and prints one JSON line: whether the cut held, and for each page how many
operations Swagger UI rendered from the schema and which requests failed or left this machine.
Used by tests/e2e/test_docs_offline.py; not a test itself.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_PUBLIC_ADDRESSES = (("1.1.1.1", 443), ("8.8.8.8", 53))  # any address outside; none answers in the namespace


def loopback_up() -> None:
    """``ip link set lo up`` without needing iproute2: a new namespace's loopback starts down."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as control:
        request = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(control, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(control, _SIOCSIFFLAGS, struct.pack("16sH14s", b"lo", flags | _IFF_UP, b""))


def outside_unreachable() -> bool:
    for address in _PUBLIC_ADDRESSES:
        with socket.socket() as probe:
            probe.settimeout(2)
            if probe.connect_ex(address) not in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ECONNREFUSED):
                return False
    return True


def wait_ready(url: str, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the server exited before it was ready")
        try:
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the server was not ready in time")


def watch_requests(page: Any, failed: list[str], elsewhere: list[str]) -> None:
    """Note the page's requests that failed, and those for any host but this server's."""
    page.on("requestfailed", lambda request: failed.append(request.url))

    def note(request: Any) -> None:
        if request.url.startswith("http") and urlsplit(request.url).hostname != "127.0.0.1":
            elsewhere.append(request.url)

    page.on("request", note)


async def rendered_operations(page: Any, seconds: float = 30) -> int:
    """How many operations Swagger UI shows once it has stopped adding them (it renders in steps)."""
    deadline = time.monotonic() + seconds
    count, steady_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = await page.locator(".swagger-ui .opblock").count()
        if now != count:
            count, steady_since = now, time.monotonic()
        elif count > 0 and time.monotonic() - steady_since > 1.5:
            break
        await asyncio.sleep(0.25)
    return count


async def visit(url: str, chromium: str, pages: list[str]) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    report: dict[str, Any] = {}
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            for path in pages:
                page = await browser.new_page()
                failed: list[str] = []
                elsewhere: list[str] = []
                watch_requests(page, failed, elsewhere)
                await page.goto(f"{url}{path}", wait_until="load")
                report[path] = {
                    "rendered": await rendered_operations(page),
                    # what Swagger UI read from the schema (it renders the sections near the viewport only)
                    "tags": await page.evaluate("() => ui.specSelectors.taggedOperations().size"),
                    "operations": await page.evaluate(
                        "() => ui.specSelectors.taggedOperations().reduce((n, t) => n + t.get('operations').size, 0)"
                    ),
                    "title": await page.locator(".swagger-ui .title").first.text_content(timeout=5_000),
                    "failed": failed,
                    "elsewhere": elsewhere,
                }
                await page.close()
        finally:
            await browser.close()
    return report


def main() -> None:
    workdir, license_server, chromium, port = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    loopback_up()
    result: dict[str, Any] = {"outside_unreachable": outside_unreachable()}
    subprocess.run([license_server, "init", "--dev"], cwd=workdir, check=True, capture_output=True)
    url = f"http://127.0.0.1:{port}"
    with (workdir / "server.log").open("wb") as log:
        server = subprocess.Popen(
            [license_server, "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_ready(url, server)
        result["pages"] = asyncio.run(visit(url, chromium, ["/schema", "/schema/swagger"]))
    finally:
        server.terminate()
        server.wait(timeout=15)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
