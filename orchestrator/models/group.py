"""Experiment groups: branches submitted together, compared when they finish."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import StringConstraints, model_validator
from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from orchestrator.models.experiment import (
    CodeFields,
    ExperimentBase,
    ExperimentPublic,
    Resources,
    SecretFields,
    Tag,
)
from orchestrator.models.types import RowIdValue, UTCDateTime, utcnow


class ExperimentGroup(SQLModel, table=True):
    __tablename__ = "experiment_group"

    id: int | None = Field(default=None, primary_key=True)
    owner_id: int = Field(foreign_key="user.id", index=True)
    name: str = Field(max_length=200)
    # Result keys shown as columns of the comparison table (all numeric ones when empty).
    compare: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )


MemberKey = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class GroupMember(ExperimentBase, CodeFields, SecretFields):
    """One experiment of a group; ``key`` names it for ``depends_on`` inside the group."""

    key: MemberKey
    config: dict[str, Any] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    tags: list[Tag] = Field(default_factory=list, max_length=20)
    # Keys of other members, or ids of existing experiments.
    depends_on: list[MemberKey | RowIdValue] = Field(default_factory=list, max_length=100)


class GroupCreate(SQLModel):
    name: str = Field(min_length=1, max_length=200)
    # Merged under every member's config (the member's own values win): the shared dataset.
    shared_config: dict[str, Any] = Field(default_factory=dict)
    compare: list[str] = Field(default_factory=list, max_length=20)
    experiments: list[GroupMember] = Field(min_length=1, max_length=100)

    @model_validator(mode="after")
    def _unique_keys(self) -> GroupCreate:
        keys = [m.key for m in self.experiments]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise ValueError(f"experiment keys must be unique within a group: {duplicates}")
        return self


class ComparisonRow(SQLModel):
    experiment_id: int
    name: str
    status: str
    attempts: int
    gpu_minutes: float
    wall_minutes: float
    values: dict[str, float | None]


class GroupDetail(SQLModel):
    id: int
    name: str
    owner_id: int
    created_at: datetime
    status: str
    experiments: list[ExperimentPublic]
    # Present once every experiment of the group has finished.
    comparison: list[ComparisonRow] | None
    columns: list[str]
