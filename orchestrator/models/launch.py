"""Kaggle kernels the control plane pushed to bring up a worker, and how each one went."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, String, text
from sqlmodel import Field, SQLModel

from orchestrator.models.types import UTCDateTime, utcnow


class LaunchStatus(StrEnum):
    launching = "launching"  # recorded, push under way
    queued = "queued"  # kernel pushed, waiting for a machine
    running = "running"
    complete = "complete"
    error = "error"  # the kernel ran and failed
    canceled = "canceled"
    failed = "failed"  # the push itself failed: nothing runs

    @property
    def is_final(self) -> bool:
        return self in (
            LaunchStatus.complete,
            LaunchStatus.error,
            LaunchStatus.canceled,
            LaunchStatus.failed,
        )

    @property
    def is_failure(self) -> bool:
        return self in (LaunchStatus.error, LaunchStatus.failed)


# One live launch per need: the partial unique index makes a second, concurrent one fail to insert.
LIVE_WHERE = "finished_at IS NULL"


class KaggleLaunch(SQLModel, table=True):
    __tablename__ = "kaggle_launch"
    __table_args__ = (
        Index(
            "uq_kaggle_launch_live",
            "need_key",
            unique=True,
            sqlite_where=text(LIVE_WHERE),
            postgresql_where=text(LIVE_WHERE),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    need_key: str = Field(max_length=200, index=True)  # what it answers: kaggle:<account>
    kernel_slug: str = Field(max_length=200)
    status: str = Field(
        default=LaunchStatus.launching, sa_column=Column(String(16), nullable=False)
    )
    version_number: int | None = None
    error: str | None = Field(default=None, max_length=4000)
    experiment_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    timeout_seconds: int | None = None
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    finished_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))


class KaggleLaunchPublic(SQLModel):
    id: int
    need_key: str
    kernel_slug: str
    status: str
    version_number: int | None
    error: str | None
    experiment_ids: list[Any]
    timeout_seconds: int | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
