"""Pools: an admin shares worker tokens with users. A token in a pool takes the work of the
pool's users (work that names no secrets), besides its owner's."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column
from sqlmodel import Field, SQLModel

from orchestrator.models.types import UTCDateTime, utcnow

POOL_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class Pool(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True, index=True)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )


class PoolUser(SQLModel, table=True):
    __tablename__ = "pool_user"

    pool_id: int = Field(foreign_key="pool.id", primary_key=True)
    user_id: int = Field(foreign_key="user.id", primary_key=True, index=True)


class PoolToken(SQLModel, table=True):
    __tablename__ = "pool_token"

    pool_id: int = Field(foreign_key="pool.id", primary_key=True)
    token_id: int = Field(foreign_key="worker_token.id", primary_key=True, index=True)


class PoolCreate(SQLModel):
    name: str = Field(regex=POOL_NAME)


class PoolPublic(SQLModel):
    id: int
    name: str
    created_at: datetime
    user_ids: list[int]
    token_ids: list[int]
