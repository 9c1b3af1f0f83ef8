"""Job output: the capped tail of each attempt's stdout+stderr, as its worker shipped it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, Text
from sqlmodel import Field, SQLModel

from orchestrator.models.types import UTCDateTime, utcnow


class AttemptLog(SQLModel, table=True):
    """One row per attempt. ``total_bytes`` is the offset just past the last byte received;
    ``tail`` holds the newest bytes only, so it starts at ``total_bytes - len(tail.encode())``.
    """

    __tablename__ = "attempt_log"

    attempt_id: int = Field(foreign_key="attempt.id", primary_key=True, ondelete="CASCADE")
    tail: str = Field(default="", sa_column=Column(Text, nullable=False))
    # Logs of a long job can pass 2 GiB over its life.
    total_bytes: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
