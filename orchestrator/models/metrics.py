"""Metric history: the values an attempt reported over time, for the experiment page's chart."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from orchestrator.models.types import UTCDateTime, utcnow


class MetricSample(SQLModel, table=True):
    """One heartbeat's metrics (``values``) at the attempt's progress ``step``."""

    __tablename__ = "metric_sample"
    __table_args__ = (Index("ix_metric_sample_attempt_id", "attempt_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    attempt_id: int = Field(foreign_key="attempt.id")
    step: int | None = None
    recorded_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    values: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
