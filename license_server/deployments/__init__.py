"""Activations (fingerprint, seats), polling, heartbeats, validate-with-nonce and usage reports."""
