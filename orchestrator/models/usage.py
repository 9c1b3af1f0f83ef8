"""GPU time: what workers spent running jobs (from heartbeats), and platforms' own quota figures."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from orchestrator.models.types import UTCDateTime, utcnow


class GpuUsage(SQLModel, table=True):
    """Seconds one worker spent running jobs in one ISO week, summed from lease reports.

    Platform, account and GPU count come from the worker row; connected time from its
    registration and last sign of life.
    """

    __tablename__ = "gpu_usage"
    __table_args__ = (UniqueConstraint("worker_id", "week", name="uq_gpu_usage_worker_week"),)

    id: int | None = Field(default=None, primary_key=True)
    worker_id: int = Field(foreign_key="worker.id", index=True)
    week: str = Field(max_length=8, index=True)  # ISO week, e.g. 2026-W48
    busy_seconds: float = 0.0
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )


class PlatformQuota(SQLModel, table=True):
    """The latest quota a platform reported for an account (Kaggle: through its API)."""

    __tablename__ = "platform_quota"

    platform: str = Field(primary_key=True, max_length=32)
    account: str = Field(primary_key=True, max_length=100)
    used_seconds: float | None = None
    allowed_seconds: float | None = None
    resets_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    fetched_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    error: str | None = Field(default=None, max_length=4000)
    # When admins were last told this quota runs low (once per quota week).
    low_notified_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
