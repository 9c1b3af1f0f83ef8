"""The API's replies as typed dicts: plain JSON at run time, checked by type checkers.

Servers newer than this client may add keys; nothing here rejects them.
"""

from __future__ import annotations

from typing import Any, TypedDict

FINAL_STATUSES = frozenset({"succeeded", "failed", "lost", "canceled"})


class Tokens(TypedDict):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int


class User(TypedDict):
    id: int
    email: str
    role: str
    notify_email: bool
    created_at: str


class Attempt(TypedDict):
    number: int
    worker_id: int | None
    platform: str | None
    started_at: str
    heartbeat_at: str
    ended_at: str | None
    outcome: str | None  # succeeded | failed | lost | preempted | canceled
    exit_code: int | None
    reason: str | None
    resumed_from_step: int | None
    last_checkpoint_step: int | None
    progress_step: int | None
    progress_total: int | None
    metrics: dict[str, float]


class Experiment(TypedDict):
    id: int
    name: str
    kind: str
    priority: int
    max_attempts: int
    notify: bool
    owner_id: int
    status: str  # queued | running | succeeded | failed | lost | canceled
    config: dict[str, Any]
    resources: dict[str, Any]
    tags: list[str]
    created_at: str
    updated_at: str
    finished_at: str | None
    attempt_count: int
    failure_count: int
    checkpoint_step: int | None
    result: dict[str, Any] | None
    error: str | None
    cancel_requested: bool


class ExperimentDetail(Experiment):
    attempts: list[Attempt]


class ExperimentPage(TypedDict):
    items: list[Experiment]
    next_cursor: int | None


class Worker(TypedDict):
    id: int
    name: str
    platform: str
    hostname: str
    gpu_name: str | None
    gpu_count: int
    gpu_memory_mb: int
    session_deadline: str | None
    libraries: dict[str, Any]
    registered_at: str
    last_seen_at: str


class WorkerToken(TypedDict):
    id: int
    name: str
    owner_id: int | None
    created_at: str
    revoked_at: str | None
    expires_at: str | None


class WorkerTokenCreated(WorkerToken):
    token: str  # shown once: only its hash is kept


class Secret(TypedDict):
    """All the API ever says about a secret: never its value."""

    name: str
    created_at: str
    updated_at: str


class LogChunk(TypedDict):
    experiment_id: int
    status: str
    attempt: int | None  # None while no attempt has started
    offset: int  # where ``text`` starts in the attempt's output (bytes)
    next_offset: int
    total_bytes: int
    truncated: bool  # output before ``offset`` that was asked for is no longer kept
    eof: bool  # the attempt ended and everything it wrote has been read
    text: str


class PlatformUsage(TypedDict):
    platform: str
    account: str
    source: str  # the platform's own figures (e.g. "kaggle"), or "baton": what workers reported
    gpu_hours_used: float | None
    gpu_hours_allowed: float | None
    resets_at: str | None
    busy_gpu_hours: float
    connected_gpu_hours: float
    utilization: float | None
    quota_error: str | None


class UsageTotals(TypedDict):
    busy_gpu_hours: float
    connected_gpu_hours: float
    utilization: float | None


class UsageReport(TypedDict):
    week: str  # ISO week, e.g. 2026-W48
    week_start: str
    week_end: str
    platforms: list[PlatformUsage]
    workers: list[dict[str, Any]]
    overall: UsageTotals


class Bundle(TypedDict):
    digest: str  # sha256:<hex>, what ``code: {"bundle": ...}`` names
    size: int


class Bootstrap(TypedDict):
    platform: str
    title: str
    cell: str  # Python for a notebook cell
    script: str | None  # a shell script, for the shell target
    secret_name: str | None  # None: an enrollment cell, which reads no token
    secret_store: str
    notes: list[str]
    terms: str | None
    pip: str
