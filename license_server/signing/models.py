"""The revocation lists servers imported: shared through the database, so every replica sees a retirement."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, Text
from sqlalchemy.orm import Mapped, mapped_column

from license_server.clock import utcnow
from license_server.db.base import Base


class KeyRevocationList(Base):
    """One root-signed revocation list, by its sequence number. Rows are only added; the highest number is in force
    (each list names every key retired so far)."""

    __tablename__ = "key_revocation_lists"

    sequence: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    token: Mapped[str] = mapped_column(Text)
    issued_at: Mapped[datetime]
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)
    imported_by: Mapped[str] = mapped_column(Text)
