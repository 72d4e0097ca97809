"""The web console: server-rendered pages for vendor staff (``/console``) and for customers (``/portal``, in
``console.portal``). Controllers call the same services as the API; the pages hold no rules of their own.

Layout, stable for both halves:

- ``templating``: the one Jinja2 environment (``render`` returns an HTML response); staff templates in
  ``console/templates/``, the portal's in ``console/portal/templates/`` under the ``portal/`` prefix. Every template
  extends ``base.html``.
- ``static/``: vendored assets (htmx, axe-core for the accessibility tests, the stylesheet), served at
  ``/console/static``; nothing is fetched from the internet at run time.
- ``csrf``: the per-session CSRF token every form and HTMX request carries.
- ``sessions``: the session cookie (Secure/HttpOnly/SameSite) and the staff guard.
"""

from __future__ import annotations

CONSOLE_PREFIX = "/console"
STATIC_PATH = f"{CONSOLE_PREFIX}/static"

__all__ = ["CONSOLE_PREFIX", "STATIC_PATH"]
