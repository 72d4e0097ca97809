"""Offline verification of signed license documents.

Imports only ``cryptography`` — never Litestar or SQLAlchemy — so air-gapped installs and embedding
products can use it alone (a test proves this in a fresh interpreter).
"""

from license_server.verifier.verify import (
    SUPPORTED_SCHEMA_VERSIONS,
    Reason,
    RevocationList,
    VerificationError,
    VerifiedDocument,
    Verifier,
    load_root_public_key,
    newest_revocation_list,
    read_revocation_list,
)

__all__ = [
    "SUPPORTED_SCHEMA_VERSIONS",
    "Reason",
    "RevocationList",
    "VerificationError",
    "VerifiedDocument",
    "Verifier",
    "load_root_public_key",
    "newest_revocation_list",
    "read_revocation_list",
]
