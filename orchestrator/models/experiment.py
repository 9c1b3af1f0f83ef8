from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints, field_validator, model_validator
from pydantic import Field as PydanticField
from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from orchestrator.models.secret import MAX_SECRETS_PER_EXPERIMENT, secret_name_problem
from orchestrator.models.types import RowIdValue, UTCDateTime, utcnow
from orchestrator.models.worker import Platform

MAX_PRIORITY = 100
MAX_REQUIREMENTS = 200
BUNDLE_DIGEST = r"^sha256:[0-9a-f]{64}$"
# Transports a worker may clone from. Not git's `ext::`, which runs a command on the worker.
GIT_SCHEMES = ("https://", "http://", "ssh://", "git://", "file://")
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^/\\-]")
_REF = re.compile(r"^[^\s\x00-\x1f~^:?*\[\\-][^\s\x00-\x1f~^:?*\[\\]*$")
MAX_REQUIREMENT_LENGTH = 500


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


class CodeSpec(BaseModel):
    """Where a job's code comes from: an uploaded bundle, or a git repository at a ref."""

    model_config = ConfigDict(extra="forbid")

    bundle: str | None = PydanticField(default=None, pattern=BUNDLE_DIGEST)
    git: str | None = PydanticField(default=None, min_length=1, max_length=2000)
    ref: str | None = PydanticField(default=None, min_length=1, max_length=255)

    @model_validator(mode="after")
    def _one_form(self) -> CodeSpec:
        if (self.bundle is None) == (self.git is None):
            raise ValueError('give exactly one of {"bundle": digest} or {"git": url, "ref": ref}')
        if self.bundle is not None and self.ref is not None:
            raise ValueError("ref goes with git, not with a bundle")
        if self.git is not None:
            if not (self.git.startswith(GIT_SCHEMES) or _SCP_LIKE.match(self.git)):
                schemes = ", ".join(s.removesuffix("://") for s in GIT_SCHEMES)
                raise ValueError(f"git URL must use one of {schemes} (or user@host:path)")
            if self.ref is not None and not _REF.match(self.ref):
                raise ValueError(f"ref {self.ref!r} is not a branch, tag or commit name")
        return self

    def stored(self) -> dict[str, str]:
        """What the experiment keeps: ``{"bundle": digest}`` or ``{"git": url, "ref": ref}``."""
        if self.bundle is not None:
            return {"bundle": self.bundle}
        assert self.git is not None
        return {"git": self.git, "ref": self.ref or "HEAD"}


Tag = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class ExperimentBase(SQLModel):
    name: str = Field(min_length=1, max_length=200)
    kind: str = Field(min_length=1, max_length=64)
    priority: int = Field(default=0, ge=0, le=MAX_PRIORITY)
    max_attempts: int = Field(default=3, ge=1, le=50)
    notify: bool = True


class CodeFields(SQLModel):
    """What an experiment runs with besides its config: its code and its requirements."""

    code: CodeSpec | None = None
    # pip requirement strings installed on the worker (a relative path: inside the bundle).
    requirements: list[str] = Field(default_factory=list, max_length=MAX_REQUIREMENTS)

    @field_validator("requirements")
    @classmethod
    def _requirements(cls, value: list[str]) -> list[str]:
        for index, line in enumerate(value):
            text = line.strip()
            if not 1 <= len(text) <= MAX_REQUIREMENT_LENGTH:
                raise ValueError(f"entry {index}: 1 to {MAX_REQUIREMENT_LENGTH} characters")
            if text.startswith("-"):
                # pip would read it as an option (--index-url, -e, -r): a requirement only.
                raise ValueError(f"entry {index} ({text!r}): pip options are not allowed")
            if any(c in text for c in "\r\n\x00"):
                raise ValueError(f"entry {index}: one requirement per entry, no line breaks")
        return [line.strip() for line in value]


class SecretFields(SQLModel):
    """The names of the owner's secrets the job gets as environment variables. An experiment
    naming any runs only on its owner's own workers, never on one shared through a pool."""

    secrets: list[str] = Field(default_factory=list, max_length=MAX_SECRETS_PER_EXPERIMENT)

    @field_validator("secrets")
    @classmethod
    def _secret_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if problem := secret_name_problem(name):
                raise ValueError(problem)
        return sorted(set(value))


class ExperimentCreate(ExperimentBase, CodeFields, SecretFields):
    config: dict[str, Any] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    tags: list[Tag] = Field(default_factory=list, max_length=20)
    depends_on: list[RowIdValue] = Field(default_factory=list, max_length=100)

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
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
    code: dict[str, str] | None = Field(default=None, sa_column=Column(JSON))
    requirements: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]")
    )
    # Names only (see SecretFields); the values stay encrypted in user_secret.
    secrets: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]")
    )


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
    # The commit a git ref resolved to on the worker (experiments with git code).
    code_commit: str | None = Field(default=None, max_length=64)


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
    code_commit: str | None


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
    code: dict[str, str] | None
    requirements: list[str]
    secrets: list[str] = []


class ExperimentDetail(ExperimentPublic):
    attempts: list[AttemptPublic]


class ExperimentPage(SQLModel):
    items: list[ExperimentPublic]
    next_cursor: int | None
