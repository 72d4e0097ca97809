"""Usage: gauges, monthly counters, consumptions, reservations and usage events."""
