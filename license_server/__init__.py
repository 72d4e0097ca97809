"""License Server: issue, sign and enforce enterprise licenses for self-hosted customers."""

__version__ = "0.1.0"
