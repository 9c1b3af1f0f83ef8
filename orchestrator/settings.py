"""Every setting of the control plane, read from the environment or `.env`."""

from __future__ import annotations

import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# A secret that must never be accepted outside development.
DEFAULT_SECRET = "change-me"
MIN_SECRET_LENGTH = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    env: Literal["dev", "test", "prod"] = Field("dev", alias="BATON_ENV")
    secret_key: str = Field("", alias="BATON_SECRET_KEY")
    data_dir: Path = Field(Path(".baton"), alias="BATON_DATA_DIR")
    database_url: str = Field("", alias="DATABASE_URL")
    redis_url: str = Field("", alias="REDIS_URL")
    checkpoint_url: str = Field("", alias="BATON_CHECKPOINT_URL")
    public_url: str = Field("http://127.0.0.1:8000", alias="BATON_PUBLIC_URL")
    auto_migrate: bool = Field(True, alias="BATON_AUTO_MIGRATE")

    access_token_minutes: int = Field(15, alias="BATON_ACCESS_TOKEN_MINUTES", gt=0)
    refresh_token_days: int = Field(14, alias="BATON_REFRESH_TOKEN_DAYS", gt=0)
    jwt_issuer: str = "baton"
    jwt_audience: str = "baton-api"

    heartbeat_seconds: float = Field(10.0, alias="BATON_HEARTBEAT_SECONDS", gt=0)
    lease_seconds: float = Field(30.0, alias="BATON_LEASE_SECONDS", gt=0)
    reaper_seconds: int = Field(5, alias="BATON_REAPER_SECONDS", gt=0)
    reconcile_seconds: int = Field(30, alias="BATON_RECONCILE_SECONDS", gt=0)
    claim_wait_seconds: float = Field(30.0, alias="BATON_CLAIM_WAIT_SECONDS", ge=0)
    rq_queue: str = Field("baton", alias="BATON_RQ_QUEUE")

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.lease_seconds <= self.heartbeat_seconds:
            raise ValueError("BATON_LEASE_SECONDS must be longer than BATON_HEARTBEAT_SECONDS")
        weak = not self.secret_key or self.secret_key == DEFAULT_SECRET
        if self.env != "dev" and (weak or len(self.secret_key) < MIN_SECRET_LENGTH):
            raise ValueError(
                f"BATON_SECRET_KEY must be set to a random string of at least {MIN_SECRET_LENGTH} "
                f"characters when BATON_ENV={self.env} (generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
            )
        return self

    @cached_property
    def signing_key(self) -> str:
        """The JWT key; in dev a missing secret is generated once and kept in the data dir."""
        if self.secret_key and self.secret_key != DEFAULT_SECRET:
            return self.secret_key
        path = self.data_dir / "secret_key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'baton.db').resolve()}"

    @property
    def resolved_checkpoint_url(self) -> str:
        if self.checkpoint_url:
            return self.checkpoint_url
        return (self.data_dir / "checkpoints").resolve().as_uri()
