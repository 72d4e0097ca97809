"""The hosted half of the product: plans with quotas, platforms, billing accounts, subscriptions and usage.

See ``docs/billing.md`` and the design in BILLING.md. ``limits`` and ``periods`` are pure and import nothing beyond
the standard library; the rest follows the usual domain layout.
"""
