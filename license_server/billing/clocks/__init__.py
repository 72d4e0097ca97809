"""Test clocks: a frozen time that attached billing accounts read instead of the real one (see service.py)."""
