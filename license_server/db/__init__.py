"""Engine and session setup, the shared declarative base, and Alembic migrations."""
