"""This control plane's identity: one row, made with the database.

Workers key their attempt directories by it, so a worker whose disk once served another
Baton (or this one before its database was reset) never mistakes that history for its own.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Column
from sqlmodel import Field, Session, SQLModel, select

from orchestrator.models.types import UTCDateTime, utcnow


class ControlPlane(SQLModel, table=True):
    __tablename__ = "control_plane"

    id: str = Field(primary_key=True, max_length=36)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )


def control_plane_id(session: Session) -> str:
    """The identity, created on first use if the migration's row is missing."""
    row = session.exec(select(ControlPlane)).first()
    if row is None:
        row = ControlPlane(id=str(uuid.uuid4()))
        session.add(row)
        session.flush()
    return row.id
