"""The default machine fingerprint: stable across restarts, derived from stable host identifiers, hashed.

Sources, first one found wins (see docs/offline.md):

1. ``/etc/machine-id``, then ``/var/lib/dbus/machine-id`` — systemd's per-installation id, fixed when the OS is
   installed and unchanged by reboots, network or hostname changes;
2. ``/sys/class/dmi/id/product_uuid`` — the firmware's system UUID (often readable by root only);
3. the hostname — the last resort, for minimal containers that have neither.

The chosen identifier is hashed (SHA-256, with a domain-separation prefix), so the fingerprint reveals nothing about
the host and cannot be linked to the same machine id used elsewhere. Products that know a better identity for their
installation (a cluster id, a database UUID) should pass their own fingerprint instead.
"""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

FINGERPRINT_PREFIX = "fp1:"
_DOMAIN = b"license-server machine fingerprint v1\n"
_SOURCES = (
    Path("/etc/machine-id"),
    Path("/var/lib/dbus/machine-id"),
    Path("/sys/class/dmi/id/product_uuid"),
)


def machine_identifier(sources: tuple[Path, ...] = _SOURCES) -> tuple[str, str]:
    """(source name, identifier): the first readable, non-empty stable identifier."""
    for source in sources:
        try:
            value = source.read_text(encoding="ascii", errors="replace").strip()
        except OSError:
            continue
        if value and set(value) != {"0"}:  # an all-zero id is a placeholder, not an identity
            return str(source), value
    return "hostname", socket.gethostname()


def default_fingerprint(sources: tuple[Path, ...] = _SOURCES) -> str:
    """``fp1:`` + 64 hex digits of SHA-256 over the machine identifier."""
    _, value = machine_identifier(sources)
    digest = hashlib.sha256(_DOMAIN + value.encode()).hexdigest()
    return FINGERPRINT_PREFIX + digest


def resolve_fingerprint(value: str | None) -> str:
    """``None`` or ``"auto"`` mean the default fingerprint; anything else is the product's own."""
    return default_fingerprint() if value in (None, "", "auto") else str(value)
