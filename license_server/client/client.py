"""The client library a connected deployment embeds: activate, poll, cache, verify, and answer "what may I do".

Light on purpose (the standard library, ``cryptography`` and the verifier; no web or database stack), and it never
raises into the host application: network, server, cache and clock trouble all end up as a status and reason.

- ``start()`` loads the cached document and runs a background thread that activates once and then polls.
- Every document, from the server or from the cache, is verified against the pinned root key before use; a cached
  document that fails (corrupted, truncated, swapped) is discarded and the client falls back to the server.
- Without the server the last good document stands until its ``exp`` plus ``offline_grace``; then the status is
  ``lost`` with reason ``SERVER_UNREACHABLE``.
- Retired issuing keys: each cycle fetches the server's root-signed revocation list (and ``revocations=`` may give
  one at start); a document, cached or fresh, signed by a retired key is refused (``KEY_RETIRED``), and a list with
  a lower number than the one held is refused too, so an old list cannot be replayed to revive a key.
- A clock set back by more than ``clock_tolerance`` behind the trusted-time high-water mark makes the status
  ``lost`` with reason ``CLOCK_ROLLBACK``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import random
import secrets
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from license_server.clock import Clock, utcnow
from license_server.lifecycle.observer import DEFAULT_CLOCK_TOLERANCE, TrustedTime, facts_from_claims
from license_server.lifecycle.status import Status, compute_status
from license_server.verifier import (
    Reason,
    RevocationList,
    VerificationError,
    VerifiedDocument,
    Verifier,
    load_root_public_key,
    newest_revocation_list,
    read_revocation_list,
)
from license_server.verifier.fingerprint import resolve_fingerprint

if TYPE_CHECKING:
    from email.message import Message

logger = logging.getLogger("license_server.client")
DOCUMENT_FILE = "license.jws"
STATE_FILE = "client-state.json"
REVOCATIONS_FILE = "revocations.jws"
REVOCATIONS_PATH = "/.well-known/license-key-revocations.jws"
MAX_RESPONSE_BYTES = 1024 * 1024
USABLE_STATUSES = frozenset({Status.ACTIVE.value, Status.EXPIRING.value})


class _Unreachable(Exception):
    """The server could not be asked (network, timeout, 5xx)."""


@dataclass(frozen=True)
class LimitView:
    """One limit of the license: not enabled, or limit 0, means unlimited."""

    enabled: bool = False
    limit: int = 0
    used: int = 0
    usable: bool = False  # the license allows use at all (see LicenseState.usable)

    @property
    def unlimited(self) -> bool:
        return not self.enabled or self.limit == 0

    def is_available(self, n: int = 1, *, used: int | None = None) -> bool:
        """May ``n`` more be added? ``used`` overrides the server's count (e.g. one workspace's members)."""
        if not self.usable:
            return False
        return self.unlimited or self.limit - (self.used if used is None else used) >= n


@dataclass(frozen=True)
class LicenseState:
    """A snapshot of what the license allows, computed when asked; safe to keep and share between threads."""

    status: str
    reason: str
    claims: Mapping[str, Any] = field(default_factory=dict)
    detail: str | None = None  # what went wrong last, for logs and support (never a secret)

    @property
    def usable(self) -> bool:
        """Active or expiring, or expired under enforcement ``maintain`` (existing deployments keep working)."""
        if self.status in USABLE_STATUSES:
            return True
        return self.status == Status.EXPIRED.value and self.claims.get("enforcement") == "maintain"

    def _limit(self, name: str) -> LimitView:
        limits = self.claims.get("limits")
        raw = limits.get(name) if isinstance(limits, Mapping) else None
        if not isinstance(raw, Mapping):
            return LimitView(usable=self.usable)
        return LimitView(bool(raw.get("enabled")), int(raw.get("limit") or 0), int(raw.get("used") or 0), self.usable)

    @property
    def workspaces(self) -> LimitView:
        return self._limit("workspaces")

    @property
    def members_per_workspace(self) -> LimitView:
        return self._limit("members_per_workspace")

    @property
    def licensed_seats(self) -> LimitView:
        return self._limit("licensed_seats")

    def _section(self, name: str) -> dict[str, Any]:
        value = self.claims.get(name)
        return dict(value) if isinstance(value, Mapping) else {}

    @property
    def sso(self) -> dict[str, Any]:
        return self._section("sso")

    @property
    def login(self) -> dict[str, Any]:
        return self._section("login")

    @property
    def webapp_auth(self) -> dict[str, Any]:
        return self._section("webapp_auth")

    @property
    def branding(self) -> dict[str, Any]:
        return self._section("branding")

    @property
    def plugin_installation(self) -> dict[str, Any]:
        return self._section("plugin_installation")

    @property
    def workspace_policy(self) -> dict[str, Any]:
        return self._section("workspace_policy")

    @property
    def entitlements(self) -> dict[str, Any]:
        return self._section("entitlements")

    def entitlement(self, name: str, default: Any = None) -> Any:
        return self.entitlements.get(name, default)


class LicenseClient:
    def __init__(
        self,
        server_url: str,
        *,
        license_key: str,
        root_public_key: Ed25519PublicKey | str | Path,
        cache_dir: str | Path,
        fingerprint: str | None = None,
        hostname: str | None = None,
        product_version: str | None = None,
        poll_interval: float = 300.0,
        offline_grace: timedelta = timedelta(days=7),
        clock_tolerance: timedelta = DEFAULT_CLOCK_TOLERANCE,
        timeout: float = 10.0,
        clock: Clock = utcnow,
        revocations: str | Path | None = None,
    ) -> None:
        """``fingerprint`` None or ``"auto"`` uses the machine's default fingerprint (docs/offline.md).
        ``revocations``: a root-signed revocation list file (or its text) to hold from the start."""
        self.server_url = server_url.rstrip("/")
        self._license_key = license_key
        self._detail: str | None = None
        self._verifier: Verifier | None = None
        self._root_verifier: Verifier | None = None  # without any revocation list
        self._revocations: RevocationList | None = None
        self._revocations_etag: str | None = None
        self._initial_revocations = revocations
        try:
            key = (
                root_public_key
                if isinstance(root_public_key, Ed25519PublicKey)
                else load_root_public_key(root_public_key)
            )
            self._verifier = self._root_verifier = Verifier(key, clock=clock)
        except ValueError as exc:  # misconfigured: nothing can be verified, so nothing is used (and nothing raised)
            logger.error("the pinned root key is unusable: %s", exc)
            self._detail = "the pinned root key is unusable; no document can be verified"
        self.cache_dir = Path(cache_dir)
        self.fingerprint = resolve_fingerprint(fingerprint)
        self.hostname = hostname or socket.gethostname()
        self.product_version = product_version
        self.poll_interval = poll_interval
        self.offline_grace = offline_grace
        self.timeout = timeout
        self.clock = clock
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._document: VerifiedDocument | None = None
        self._token: str | None = None  # the deployment token
        self._etag: str | None = None
        self._unreachable = False
        self._trusted = TrustedTime(tolerance=clock_tolerance.total_seconds())
        self._load_cache()

    # -- what the host application asks ------------------------------------------------------------------------
    def license(self) -> LicenseState:
        """Status, reason and terms now. Never raises."""
        try:
            return self._state()
        except Exception:  # a bug here must not take the host application down
            logger.exception("computing the license state failed")
            return LicenseState(Status.LOST.value, "CLIENT_ERROR", detail="internal error; see the log")

    @property
    def workspaces(self) -> LimitView:
        return self.license().workspaces

    @property
    def members_per_workspace(self) -> LimitView:
        return self.license().members_per_workspace

    @property
    def licensed_seats(self) -> LimitView:
        return self.license().licensed_seats

    def _state(self) -> LicenseState:
        with self._lock:
            now = self.clock()
            document, unreachable, detail = self._document, self._unreachable, self._detail
            iat = document.claims.get("iat") if document else None
            rolled_back = self._trusted.observe(now, iat if isinstance(iat, int | float) else None)
        if document is None:
            result = compute_status(None, now, unreachable=unreachable)
            return LicenseState(result.status.value, result.reason.value, {}, detail)
        claims = document.claims
        exp = claims.get("exp")
        deadline = datetime.fromtimestamp(exp, UTC) + self.offline_grace if isinstance(exp, int | float) else now
        try:
            facts = facts_from_claims(claims, now=now, clock_rolled_back=rolled_back, offline_deadline=deadline)
        except ValueError:
            result = compute_status(None, now, unreachable=unreachable)
            return LicenseState(result.status.value, result.reason.value, {}, "the document's dates are unreadable")
        result = compute_status(facts, now)
        return LicenseState(result.status.value, result.reason.value, claims, detail)

    # -- the background thread ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start polling in a daemon thread (the first cycle runs at once). Never raises."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="license-client", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        self._save_state()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            ok = self.refresh()
            failures = 0 if ok else failures + 1
            # Poll on the interval (with jitter, so a fleet does not poll in step); retry sooner after a failure.
            delay = self.poll_interval if ok else min(self.poll_interval, 5.0 * 2 ** min(failures, 10))
            if self._stop.wait(delay * random.uniform(0.9, 1.1)):  # noqa: S311 - jitter, not security
                return

    def refresh(self) -> bool:
        """One cycle now: activate if needed, else poll. True when the server answered. Never raises."""
        try:
            self._refresh_revocations()
            if self._token is None:
                self._activate()
            else:
                self._poll()
            with self._lock:
                self._unreachable = False
            return True
        except _Unreachable as exc:
            with self._lock:
                self._unreachable, self._detail = True, f"server unreachable: {exc}"
            logger.warning("license server unreachable: %s", exc)
            return False
        except Exception:
            logger.exception("license refresh failed")
            with self._lock:
                self._detail = "refresh failed; see the log"
            return False
        finally:
            self._save_state()

    def report_usage(
        self,
        *,
        workspaces: Mapping[str, int],
        seats_used: int = 0,
        measured_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> bool:
        """Report usage (workspace id -> members). True when the server accepted it. Never raises."""
        try:
            if self._token is None:
                return False
            body = {
                "measured_at": (measured_at or self.clock()).astimezone(UTC).isoformat().replace("+00:00", "Z"),
                "idempotency_key": idempotency_key or secrets.token_hex(16),
                "seats_used": seats_used,
                "workspaces": [{"id": wid, "members": members} for wid, members in workspaces.items()],
            }
            status, _, _ = self._http("POST", "/v1/usage", body, bearer=self._token)
            return status == 200
        except _Unreachable:
            return False
        except Exception:
            logger.exception("reporting usage failed")
            return False

    # -- talking to the server ---------------------------------------------------------------------------------
    def _http(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        bearer: str | None = None,
        etag: str | None = None,
    ) -> tuple[int, Message, bytes]:
        # Imported on first use, in the polling thread: http.client and ssl are a third of the import cost.
        import urllib.error
        import urllib.request

        headers = {"Accept": "application/json, application/jwt"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        if etag:
            headers["If-None-Match"] = etag
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.server_url + path, data=data, method=method, headers=headers)  # noqa: S310 - the configured server
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                status, response_headers, payload = response.status, response.headers, response.read(MAX_RESPONSE_BYTES)
        except urllib.error.HTTPError as exc:
            status, response_headers, payload = exc.code, exc.headers, exc.read(MAX_RESPONSE_BYTES)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise _Unreachable(str(getattr(exc, "reason", exc))) from exc
        if status >= 500 or status == 429:
            raise _Unreachable(f"HTTP {status}")
        return status, response_headers, payload

    def _refresh_revocations(self) -> None:
        """Fetch the server's revocation list (a 304 when unchanged); a server without one is not an error."""
        status, headers, payload = self._http("GET", REVOCATIONS_PATH, etag=self._revocations_etag)
        if status != 200 or not payload.strip():
            return
        if self.accept_revocations(payload.decode("ascii", "replace")):
            with self._lock:
                self._revocations_etag = headers.get("ETag")

    def accept_revocations(self, token: str) -> bool:
        """Hold a root-signed revocation list unless it is older than the one held (then it is refused and logged).
        A held document signed by a key it retires is dropped at once. True when the list is held now."""
        if self._root_verifier is None:
            return False
        try:
            offered = read_revocation_list(token, self._root_verifier.root_public_key)
            with self._lock:
                held = newest_revocation_list(self._revocations, offered)
        except VerificationError as exc:
            logger.error("refusing a revocation list (%s)", exc)
            with self._lock:
                self._detail = f"revocation list refused: {exc.reason}"
            return False
        if held is self._revocations:
            return True
        with self._lock:
            self._revocations = held
            self._verifier = self._root_verifier.with_revocation_list(held)
            document = self._document
            if document is not None and document.kid in held.kids:
                logger.warning(
                    "the held license document was signed by retired key %s; fetching a new one", document.kid
                )
                self._document, self._etag = None, None
                self._detail = f"document refused: {Reason.KEY_RETIRED}"
        try:
            _write_private(self.cache_dir / REVOCATIONS_FILE, held.token.encode("ascii") + b"\n")
        except OSError as exc:
            logger.warning("cannot write the license cache in %s: %s", self.cache_dir, exc)
        return True

    def _activate(self) -> None:
        body = {
            "license_key": self._license_key,
            "fingerprint": self.fingerprint,
            "hostname": self.hostname,
            "product_version": self.product_version,
            "reissue_token": True,  # we hold no token: a lost one must be replaced, without a second seat
        }
        status, headers, payload = self._http("POST", "/v1/activations", body)
        if status not in (200, 201):
            code = _problem_code(payload)
            with self._lock:
                self._detail = f"activation refused: {code} (HTTP {status})"
            logger.warning("activation refused: %s (HTTP %s)", code, status)
            return
        answer = json.loads(payload)
        self._accept(str(answer["document"]), headers.get("ETag"), token=answer.get("deployment_token"))

    def _poll(self) -> None:
        status, headers, payload = self._http("GET", "/v1/license", bearer=self._token, etag=self._etag)
        if status == 304:
            with self._lock:
                self._detail = None
            return
        if status == 401:  # deactivated or unknown: activate again (the server decides whether a seat is free)
            with self._lock:
                self._token, self._etag = None, None
            self._activate()
            return
        if status != 200:
            raise _Unreachable(f"unexpected HTTP {status}")
        self._accept(payload.decode("ascii", "replace").strip(), headers.get("ETag"))

    def _accept(self, document_token: str, etag: str | None, *, token: str | None = None) -> None:
        """Only a document that verifies against the pinned root replaces the last good one."""
        if token:
            with self._lock:
                self._token = token
        try:
            document = self._verify(document_token)
        except VerificationError as exc:
            logger.error("the server sent a document that fails verification (%s); keeping the last good one", exc)
            with self._lock:
                self._detail = f"document from the server refused: {exc.reason}"
            return
        try:
            _write_private(self.cache_dir / DOCUMENT_FILE, document_token.encode("ascii") + b"\n")
        except OSError as exc:
            logger.warning("cannot write the license cache in %s: %s", self.cache_dir, exc)
        iat = document.claims.get("iat")
        with self._lock:
            self._document, self._etag, self._detail = document, etag, None
            self._trusted.observe(self.clock(), iat if isinstance(iat, int | float) else None)

    def _verify(self, token: str | bytes) -> VerifiedDocument:
        if self._verifier is None:
            raise VerificationError(Reason.UNCERTIFIED_KEY, "no usable root key is pinned")
        return self._verifier.verify_authentic(token)

    # -- the cache ---------------------------------------------------------------------------------------------
    def _load_cache(self) -> None:
        """Read the cached document and state; anything unreadable or unverifiable is discarded, never raised."""
        try:
            state = json.loads((self.cache_dir / STATE_FILE).read_text())
            if not isinstance(state, dict):
                raise ValueError("not an object")
        except (OSError, ValueError):
            state = {}
        self._trusted = TrustedTime.from_json(state.get("trusted_time"), self._trusted.tolerance)
        token, etag = state.get("deployment_token"), state.get("etag")
        same_identity = state.get("server_url") == self.server_url and state.get("fingerprint") == self.fingerprint
        if same_identity and isinstance(token, str):
            self._token = token
            self._etag = etag if isinstance(etag, str) else None
        self._load_revocations()
        try:
            cached = (self.cache_dir / DOCUMENT_FILE).read_bytes().strip()
        except OSError:
            return
        try:
            self._document = self._verify(cached)
        except VerificationError as exc:
            logger.warning("the cached license document is not usable (%s); asking the server", exc.reason)
            self._etag = None  # make the next poll fetch a full document
            self._detail = f"cached document refused: {exc.reason}"

    def _load_revocations(self) -> None:
        """The list cached by an earlier run and the one given at start: the newer is held (before any document
        is trusted, so a cached document of a retired key is refused)."""
        given = self._initial_revocations
        candidates: list[str] = []
        with contextlib.suppress(OSError):  # no list cached yet
            candidates.append((self.cache_dir / REVOCATIONS_FILE).read_text())
        if isinstance(given, Path):
            try:
                candidates.append(given.read_text())
            except OSError as exc:
                logger.error("cannot read the revocation list %s: %s", given, exc)
        elif isinstance(given, str):
            candidates.append(given)
        for token in sorted(candidates, key=_revocation_sequence, reverse=True):
            if self.accept_revocations(token):
                break

    def _save_state(self) -> None:
        try:
            with self._lock:
                state = {
                    "server_url": self.server_url,
                    "fingerprint": self.fingerprint,
                    "deployment_token": self._token,
                    "etag": self._etag,
                    "trusted_time": self._trusted.to_json(),
                }
            _write_private(self.cache_dir / STATE_FILE, json.dumps(state).encode())
        except OSError as exc:
            logger.warning("cannot write the license cache in %s: %s", self.cache_dir, exc)


def _write_private(path: Path, data: bytes) -> None:
    """Atomically (write, then rename), readable by the owner only: the state holds the deployment token."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _revocation_sequence(token: str) -> int:
    """The list's number before verification, only to try the newest first (accept_revocations verifies)."""
    try:
        payload = token.strip().split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return int(claims.get("seq", 0))
    except (IndexError, ValueError, TypeError, AttributeError):
        return -1


def _problem_code(payload: bytes) -> str:
    try:
        value = json.loads(payload)
    except ValueError:
        return "unknown"
    return str(value.get("code", "unknown")) if isinstance(value, dict) else "unknown"
