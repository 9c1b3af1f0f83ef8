from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column
from sqlmodel import Field, SQLModel

from orchestrator.models.types import UTCDateTime, utcnow

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+$"


class Role(StrEnum):
    admin = "admin"
    user = "user"


class UserBase(SQLModel):
    email: str = Field(max_length=254, regex=EMAIL_PATTERN, unique=True, index=True)
    notify_email: bool = True


class User(UserBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    hashed_password: str
    role: Role = Field(default=Role.user)
    is_active: bool = True
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )

    @property
    def is_admin(self) -> bool:
        return self.role == Role.admin


class UserCreate(UserBase):
    password: str = Field(min_length=8, max_length=256)
    role: Role = Role.user


class UserPublic(UserBase):
    id: int
    role: Role
    created_at: datetime


class RefreshToken(SQLModel, table=True):
    """One issued refresh token; rotation links it to its successor within a family."""

    jti: str = Field(primary_key=True, max_length=64)
    family_id: str = Field(index=True, max_length=64)
    user_id: int = Field(foreign_key="user.id", index=True)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    expires_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    replaced_by: str | None = Field(default=None, max_length=64)
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
