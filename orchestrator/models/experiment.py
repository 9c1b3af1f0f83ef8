from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import field_validator
from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from orchestrator.models.types import UTCDateTime, utcnow
from orchestrator.models.worker import Platform

MAX_PRIORITY = 100


class ExperimentStatus(StrEnum):
    waiting = "waiting"  # for its prerequisites (depends_on) to succeed; not claimable
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    lost = "lost"
    canceled = "canceled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset(
    {
        ExperimentStatus.succeeded,
        ExperimentStatus.failed,
        ExperimentStatus.lost,
        ExperimentStatus.canceled,
    }
)


class AttemptOutcome(StrEnum):
    succeeded = "succeeded"
    failed = "failed"  # the job's own error: counts against max_attempts
    lost = "lost"  # the lease expired, the session died: counts against max_attempts
    preempted = "preempted"  # released before a known deadline: requeued for free
    canceled = "canceled"

    @property
    def counts_as_failure(self) -> bool:
        return self in (AttemptOutcome.failed, AttemptOutcome.lost)


class Resources(SQLModel):
    """What a job needs from a worker; decides its capability class."""

    gpu: bool = False
    min_gpu_memory_gb: float = Field(default=0, ge=0, le=4096)
    platforms: list[Platform] = Field(default_factory=list, max_length=len(Platform))

    @field_validator("platforms")
    @classmethod
    def _sorted_unique(cls, value: list[Platform]) -> list[Platform]:
        return sorted(set(value))


class ExperimentBase(SQLModel):
    name: str = Field(min_length=1, max_length=200)
    kind: str = Field(min_length=1, max_length=64)
    priority: int = Field(default=0, ge=0, le=MAX_PRIORITY)
    max_attempts: int = Field(default=3, ge=1, le=50)
    notify: bool = True


class ExperimentCreate(ExperimentBase):
    config: dict[str, Any] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    tags: list[str] = Field(default_factory=list, max_length=20)
    depends_on: list[int] = Field(default_factory=list, max_length=100)

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        for tag in value:
            if not 1 <= len(tag) <= 64:
                raise ValueError("each tag must be 1 to 64 characters")
        return sorted(set(value))


class Experiment(ExperimentBase, table=True):
    __table_args__ = (Index("ix_experiment_owner_status", "owner_id", "status"),)

    id: int | None = Field(default=None, primary_key=True)
    owner_id: int = Field(foreign_key="user.id", index=True)
    group_id: int | None = Field(default=None, foreign_key="experiment_group.id", index=True)
    status: ExperimentStatus = Field(default=ExperimentStatus.queued, index=True)
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    resources: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    queued_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    finished_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    attempt_count: int = 0
    failure_count: int = 0
    checkpoint_key: str | None = Field(default=None, max_length=512)
    checkpoint_step: int | None = None
    result: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    error: str | None = Field(default=None, max_length=4000)
    cancel_requested: bool = False


class ExperimentTag(SQLModel, table=True):
    __tablename__ = "experiment_tag"

    experiment_id: int = Field(foreign_key="experiment.id", primary_key=True)
    tag: str = Field(primary_key=True, max_length=64, index=True)


class ExperimentDependency(SQLModel, table=True):
    """``experiment_id`` waits until ``depends_on_id`` has succeeded."""

    __tablename__ = "experiment_dependency"

    experiment_id: int = Field(foreign_key="experiment.id", primary_key=True)
    depends_on_id: int = Field(foreign_key="experiment.id", primary_key=True, index=True)


class Attempt(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    experiment_id: int = Field(foreign_key="experiment.id", index=True)
    number: int
    worker_id: int | None = Field(default=None, foreign_key="worker.id")
    platform: str | None = Field(default=None, max_length=32)
    lease_token: str = Field(max_length=64, unique=True, index=True)
    started_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    heartbeat_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    ended_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    outcome: AttemptOutcome | None = None
    exit_code: int | None = None
    reason: str | None = Field(default=None, max_length=4000)
    log_tail: str | None = None
    resumed_from_step: int | None = None
    last_checkpoint_step: int | None = None
    progress_step: int | None = None
    progress_total: int | None = None
    metrics: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class AttemptPublic(SQLModel):
    number: int
    worker_id: int | None
    platform: str | None
    started_at: datetime
    heartbeat_at: datetime
    ended_at: datetime | None
    outcome: AttemptOutcome | None
    exit_code: int | None
    reason: str | None
    resumed_from_step: int | None
    last_checkpoint_step: int | None
    progress_step: int | None
    progress_total: int | None
    metrics: dict[str, Any]


class ExperimentPublic(ExperimentBase):
    id: int
    owner_id: int
    group_id: int | None
    depends_on: list[int]
    status: ExperimentStatus
    config: dict[str, Any]
    resources: dict[str, Any]
    tags: list[str]
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    attempt_count: int
    failure_count: int
    checkpoint_step: int | None
    result: dict[str, Any] | None
    error: str | None
    cancel_requested: bool


class ExperimentDetail(ExperimentPublic):
    attempts: list[AttemptPublic]


class ExperimentPage(SQLModel):
    items: list[ExperimentPublic]
    next_cursor: int | None
