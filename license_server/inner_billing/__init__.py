"""Dify Cloud's billing API (``/inner/billing``): the routes Dify's own ``BillingService`` calls, over the billing core.

See docs/inner-billing.md and /work/shared/contracts/dify-billing-api.md. ``mapping.py`` holds the pure translations
(our plans, limits and periods to Dify's names, numbers and sentinels), ``service.py`` calls the billing core
(``billing.accounts``, ``billing.usage``) and builds the answers, ``controllers.py`` is the thin HTTP layer, and
``dify_database.py`` reads the gauges Dify never reports from a Dify database (``license-server billing dify-sync``).
"""
