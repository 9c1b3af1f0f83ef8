"""Single-use enrollment codes: what a kernel or cell carries instead of a worker token.

A code is exchanged once, within at most an hour, for a fresh worker token that lives for
one session (``WorkerToken.expires_at``). Only the code's sha256 is stored.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column
from sqlmodel import Field, SQLModel

from orchestrator.models.types import UTCDateTime, utcnow


class Enrollment(SQLModel, table=True):
    __tablename__ = "enrollment"

    id: int | None = Field(default=None, primary_key=True)
    code_hash: str = Field(max_length=64, unique=True, index=True)
    # What made it: a Kaggle launch (rotation), or a user (bootstrap --enroll); neither: the
    # operator's `baton bootstrap --enroll` on the control plane's host.
    launch_id: int | None = Field(default=None, foreign_key="kaggle_launch.id", index=True)
    created_by_id: int | None = Field(default=None, foreign_key="user.id")
    # The worker token's name and lifetime once the code is exchanged (a whole session).
    token_name: str = Field(max_length=100)
    session_seconds: int
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    expires_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    used_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    # The token the code became (set by the exchange).
    worker_token_id: int | None = Field(default=None, foreign_key="worker_token.id")


class EnrollIn(SQLModel):
    code: str = Field(min_length=1, max_length=200)


class Enrolled(SQLModel):
    token: str
    expires_at: datetime
