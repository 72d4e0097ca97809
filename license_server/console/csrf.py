"""CSRF protection for every console form and HTMX request: a synchronizer token bound to the server-side session.

The token is an HMAC (under the server's secret-hashing key) of the session's stored id, so it needs no storage,
differs per session, and is worthless without the session cookie beside it. Forms send it in the ``_csrf`` field,
HTMX in the ``X-CSRF-Token`` header (``base.html`` sets ``hx-headers`` once for the whole page). Litestar's own
CSRFConfig is app-wide double-submit-cookie; the admin API's bearer-token routes need none, and a token tied to the
server-side session also resists cookie tossing from a sibling subdomain, so the console checks its own.
"""

from __future__ import annotations

import hmac
from typing import Any

from litestar import Request
from litestar.datastructures import UploadFile

from license_server.auth.hashing import SecretHasher
from license_server.errors import CsrfTokenInvalid

CSRF_FIELD = "_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token(hasher: SecretHasher, session_key: str) -> str:
    return hasher.digest(f"console-csrf:{session_key}")


async def presented_token(request: Request[Any, Any, Any]) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get(CSRF_FIELD)  # parsed once; the handler reads the cached form
        return value if isinstance(value, str) and not isinstance(value, UploadFile) else None
    return None


async def require_csrf(request: Request[Any, Any, Any], hasher: SecretHasher, session_key: str) -> None:
    """Refuse an unsafe request whose token is not this session's (a forged cross-site POST has none)."""
    if request.method in SAFE_METHODS:
        return
    presented = await presented_token(request)
    if presented is None or not hmac.compare_digest(presented, csrf_token(hasher, session_key)):
        raise CsrfTokenInvalid()
