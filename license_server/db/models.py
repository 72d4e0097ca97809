"""Every domain's models, imported in one place so Alembic and the app see the whole schema."""

from license_server.auth.models import AdminToken, AuditEvent
from license_server.db.base import Base
from license_server.licenses.models import Customer, License, Plan

__all__ = ["AdminToken", "AuditEvent", "Base", "Customer", "License", "Plan"]
