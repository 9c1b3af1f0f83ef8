"""Every setting of the control plane, read from the environment or `.env`."""

from __future__ import annotations

import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    IPvAnyNetwork,
    NonNegativeInt,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator.urls import normalize_public_url
from worker.checkpoints.signed import SIGNED_PREFIX

# What a Grant names when workers reach checkpoints through the control plane's own store.
CONTROL_PLANE_STORE = SIGNED_PREFIX + "control-plane"
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
    # Where notebooks and people reach the API (a proxy's or tunnel's URL); orchestrator/urls.py.
    public_url: str = Field("http://127.0.0.1:8000", alias="BATON_PUBLIC_URL")
    auto_migrate: bool = Field(True, alias="BATON_AUTO_MIGRATE")

    access_token_minutes: int = Field(15, alias="BATON_ACCESS_TOKEN_MINUTES", gt=0)
    refresh_token_days: int = Field(14, alias="BATON_REFRESH_TOKEN_DAYS", gt=0)
    jwt_issuer: str = "baton"
    jwt_audience: str = "baton-api"

    # Login throttling, counted in Redis so it holds across API replicas (docs/auth.md): per
    # account, this many logins a window that did not succeed; per client address, this many
    # attempts a window. Past either: 429 with Retry-After, before any password is hashed.
    login_window_seconds: int = Field(300, alias="BATON_LOGIN_WINDOW_SECONDS", gt=0)
    login_account_failures: int = Field(5, alias="BATON_LOGIN_ACCOUNT_FAILURES", gt=0)
    login_ip_attempts: int = Field(30, alias="BATON_LOGIN_IP_ATTEMPTS", gt=0)
    # Password hashes (argon2: tens of ms of CPU each) one API process runs at once; a storm
    # of logins waits its turn instead of taking every thread and core.
    password_hash_concurrency: int = Field(2, alias="BATON_PASSWORD_HASH_CONCURRENCY", gt=0)
    # Reverse proxies (addresses or networks, JSON list) whose X-Forwarded-For names the client.
    # Empty: the client is the TCP peer, and X-Forwarded-For is ignored.
    trusted_proxies: list[IPvAnyNetwork] = Field([], alias="BATON_TRUSTED_PROXIES")

    heartbeat_seconds: float = Field(10.0, alias="BATON_HEARTBEAT_SECONDS", gt=0)
    lease_seconds: float = Field(30.0, alias="BATON_LEASE_SECONDS", gt=0)
    reaper_seconds: int = Field(5, alias="BATON_REAPER_SECONDS", gt=0)
    reconcile_seconds: int = Field(30, alias="BATON_RECONCILE_SECONDS", gt=0)
    claim_wait_seconds: float = Field(30.0, alias="BATON_CLAIM_WAIT_SECONDS", ge=0)
    rq_queue: str = Field("baton", alias="BATON_RQ_QUEUE")
    # How much of each attempt's stdout+stderr the control plane keeps (the newest bytes).
    log_tail_bytes: int = Field(256 * 1024, alias="BATON_LOG_TAIL_BYTES", ge=1024)
    # The largest code bundle (.tar.gz of a working directory) `POST /api/v1/bundles` takes.
    bundle_max_mb: int = Field(200, alias="BATON_BUNDLE_MAX_MB", gt=0)

    # Checkpoint retention (the GCS free tier is 5 GB) and the signed URLs workers use.
    checkpoint_budget_bytes: int = Field(5_000_000_000, alias="BATON_CHECKPOINT_BUDGET_BYTES", ge=0)
    checkpoint_keep: int = Field(3, alias="BATON_CHECKPOINT_KEEP", ge=1)
    retention_seconds: int = Field(600, alias="BATON_RETENTION_SECONDS", gt=0)
    checkpoint_signed_urls: bool = Field(True, alias="BATON_CHECKPOINT_SIGNED_URLS")
    # Single-machine opt-in: workers write a file:// store directly instead of through the API.
    checkpoint_direct: bool = Field(False, alias="BATON_CHECKPOINT_DIRECT")
    # V4 signed URLs live at most 7 days.
    checkpoint_url_seconds: int = Field(3600, alias="BATON_CHECKPOINT_URL_SECONDS", gt=0, le=604800)
    # Files above this go up as resumable uploads, in chunks of this size (GCS: n x 256 KiB).
    checkpoint_chunk_bytes: int = Field(
        8 * 1024 * 1024, alias="BATON_CHECKPOINT_CHUNK_BYTES", gt=0, multiple_of=256 * 1024
    )

    # Email; without a host, notifications are written to a log file instead.
    smtp_host: str = Field("", alias="BATON_SMTP_HOST")
    smtp_port: int = Field(587, alias="BATON_SMTP_PORT", gt=0)
    smtp_user: str = Field("", alias="BATON_SMTP_USER")
    smtp_password: SecretStr = Field(SecretStr(""), alias="BATON_SMTP_PASSWORD")
    smtp_security: Literal["none", "starttls", "ssl"] = Field(
        "starttls", alias="BATON_SMTP_SECURITY"
    )
    smtp_from: str = Field("baton@localhost", alias="BATON_SMTP_FROM")
    # Seconds before each retry of a failed email (JSON list); its length is the number of retries.
    notify_retry_seconds: list[NonNegativeInt] = Field(
        [5, 15, 60, 300, 900], alias="BATON_NOTIFY_RETRY_SECONDS"
    )

    # Platforms. Kaggle credentials (kaggle.com > Settings > API) turn on quota reads and kernel
    # launches; the endpoint is for tests against a local stand-in of the Kaggle API.
    kaggle_username: str = Field("", alias="BATON_KAGGLE_USERNAME")
    kaggle_key: SecretStr = Field(SecretStr(""), alias="BATON_KAGGLE_KEY")
    kaggle_api_endpoint: str = Field("", alias="BATON_KAGGLE_API_ENDPOINT")
    kaggle_kernel: str = Field("baton-worker", alias="BATON_KAGGLE_KERNEL", min_length=5)
    kaggle_session_hours: float = Field(9.0, alias="BATON_KAGGLE_SESSION_HOURS", gt=0, le=12)
    kaggle_min_quota_hours: float = Field(1.0, alias="BATON_KAGGLE_MIN_QUOTA_HOURS", ge=0)
    kaggle_rotation_seconds: int = Field(60, alias="BATON_KAGGLE_ROTATION_SECONDS", gt=0)
    # After a failed launch, wait this long (doubling per further failure, up to an hour).
    kaggle_retry_seconds: int = Field(300, alias="BATON_KAGGLE_RETRY_SECONDS", ge=0)
    # Enrollment codes (what launched kernels and `bootstrap --enroll` cells carry instead of a
    # worker token): a code must be exchanged within this many seconds (at most an hour), and
    # the worker token it becomes lasts this many hours (the longest hosted session, 12 h, plus
    # time to hand over). Rotation sizes each launch's token to that kernel's timeout instead.
    enroll_seconds: int = Field(3600, alias="BATON_ENROLL_SECONDS", gt=0, le=3600)
    enroll_session_hours: float = Field(13.0, alias="BATON_ENROLL_SESSION_HOURS", gt=0, le=168)
    # What notebooks pip-install; empty: the worker wheel this control plane serves.
    worker_pip: str = Field("", alias="BATON_WORKER_PIP")
    # Weekly GPU hours each platform allows, where the platform cannot be asked (JSON object).
    platform_gpu_hours: dict[str, float] = Field({"kaggle": 30.0}, alias="BATON_PLATFORM_GPU_HOURS")

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        return normalize_public_url(value)

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

    @property
    def bundle_max_bytes(self) -> int:
        return self.bundle_max_mb * 1024 * 1024

    @property
    def worker_checkpoint_url(self) -> str:
        """The store a Grant names. A bucket: through signed URLs unless disabled. A local
        directory: the control plane's own store (signed URLs of its API), since a worker on
        another host cannot see it; the file:// URL itself only with BATON_CHECKPOINT_DIRECT."""
        url = self.resolved_checkpoint_url
        if url.startswith("gs://"):
            return SIGNED_PREFIX + url if self.checkpoint_signed_urls else url
        return url if self.checkpoint_direct else CONTROL_PLANE_STORE
