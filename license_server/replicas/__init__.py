"""What replicas sharing one PostgreSQL share besides the data: rate-limit and failed-auth counters, and pushed
cache invalidations. On SQLite (one process) every piece of it stays in process memory."""
