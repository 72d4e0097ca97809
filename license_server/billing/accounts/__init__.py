"""Platforms, billing accounts, subscriptions and per-account overrides."""
