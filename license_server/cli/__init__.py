"""The ``license-server`` command line: one entry point, each command a thin call into a service."""
