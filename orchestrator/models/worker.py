from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from orchestrator.models.types import UTCDateTime, utcnow


class Platform(StrEnum):
    kaggle = "kaggle"
    colab = "colab"
    paperspace = "paperspace"
    studiolab = "studiolab"
    ec2 = "ec2"
    mac = "mac"
    local = "local"


class WorkerToken(SQLModel, table=True):
    """A service account for worker agents; only its hash is stored."""

    __tablename__ = "worker_token"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    created_by_id: int | None = Field(default=None, foreign_key="user.id")
    # The user whose work the token's workers take (and, through pools, whose else).
    # Nullable only for tokens made before owners existed in an installation with no user.
    owner_id: int | None = Field(default=None, foreign_key="user.id", index=True)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    # Tokens made from an enrollment code last one session; tokens made by hand never expire.
    expires_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    last_used_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))


class WorkerTokenCreate(SQLModel):
    name: str = Field(min_length=1, max_length=100)


class WorkerTokenPublic(SQLModel):
    id: int
    name: str
    owner_id: int | None
    created_at: datetime
    revoked_at: datetime | None
    expires_at: datetime | None = None


class WorkerTokenCreated(WorkerTokenPublic):
    token: str


class WorkerBase(SQLModel):
    name: str = Field(default="worker", min_length=1, max_length=100)
    platform: Platform = Platform.local
    hostname: str = Field(default="", max_length=255)
    gpu_name: str | None = Field(default=None, max_length=100)
    gpu_count: int = Field(default=0, ge=0, le=64)
    gpu_memory_mb: int = Field(default=0, ge=0, le=10_000_000)
    session_deadline: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    # The platform account (e.g. a Kaggle username) whose quota this session spends.
    account: str = Field(default="", max_length=100)
    session_started_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))


class Worker(WorkerBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    token_id: int = Field(foreign_key="worker_token.id", index=True)
    libraries: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    registered_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    last_seen_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    # Set by an admin: the worker finishes its current job but is given no new one.
    draining: bool = False


class WorkerRegister(WorkerBase):
    libraries: dict[str, str] = Field(default_factory=dict)


class WorkerPublic(WorkerBase):
    id: int
    libraries: dict[str, Any]
    registered_at: datetime
    last_seen_at: datetime
    draining: bool = False


class WorkerRegistered(WorkerPublic):
    # Which control plane the worker now serves: its attempt directories are keyed by it.
    control_plane: str
