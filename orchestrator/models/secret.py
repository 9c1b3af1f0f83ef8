"""Per-user secrets: stored encrypted, never shown again once set (names and dates only)."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from orchestrator.models.types import UTCDateTime, utcnow

SECRET_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}$")
MAX_SECRET_BYTES = 64 * 1024
MAX_SECRETS_PER_EXPERIMENT = 50


# Variables that decide how a job starts: a secret must not replace them.
RESERVED_NAMES = frozenset(
    {"PATH", "HOME", "PYTHONPATH", "PYTHONHOME", "LD_PRELOAD", "LD_LIBRARY_PATH", "VIRTUAL_ENV"}
)


def secret_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a secret, or None. Contract and Baton variables are the
    platform's: a secret must never shadow one (BATON_CONFIG, BATON_WORKER_TOKEN, ...)."""
    if not SECRET_NAME.match(name):
        return f"{name!r} is not a secret name (A-Z, 0-9 and _, not starting with a digit, ≤ 64)"
    if name.startswith("BATON_"):
        return f"{name!r}: BATON_* variables belong to Baton and its job contract"
    if name in RESERVED_NAMES:
        return f"{name!r} decides how a job starts; it cannot be a secret"
    return None


class UserSecret(SQLModel, table=True):
    __tablename__ = "user_secret"
    __table_args__ = (UniqueConstraint("user_id", "name", name="uq_user_secret_name"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    name: str = Field(max_length=64)
    # Fernet token (AES-128-CBC + HMAC-SHA256) under a key derived from BATON_SECRET_KEY.
    ciphertext: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )


class SecretIn(SQLModel):
    value: str = Field(min_length=1, max_length=MAX_SECRET_BYTES)


class SecretPublic(SQLModel):
    """What the API ever says about a secret: never its value."""

    name: str
    created_at: datetime
    updated_at: datetime
