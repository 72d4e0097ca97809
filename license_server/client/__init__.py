"""The client library for connected deployments (see license_server/client/client.py and docs/offline.md).

Imports no web or database stack: ``import license_server.client`` is fast and light (a test proves it).
"""

from license_server.client.client import LicenseClient, LicenseState, LimitView

__all__ = ["LicenseClient", "LicenseState", "LimitView"]
