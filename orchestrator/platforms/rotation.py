"""Kaggle rotation: bring up a Kaggle worker when GPU work waits and none is coming.

Each tick (an RQ job on a cron) follows the kernels it launched, refreshes the account's
quota, and launches a kernel only when matching work is queued, quota remains, no Kaggle
worker is alive and no launch is in flight. A launch is recorded *before* the push, under a
partial unique index (one live launch per need), so two ticks never push twice; a failed
push is recorded and retried after a back-off that doubles with each further failure.

A pushed kernel holds no secret of Baton's: the launch's single-use enrollment code, which
the agent exchanges for a worker token of that one session. The code must be exchanged
within BATON_ENROLL_SECONDS (at most an hour); a kernel Kaggle keeps queued longer starts, is
refused, exits with an error, and the launch counts as failed and is retried. When a launch
ends, its code (if unused) and the token it became stop working.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from orchestrator.db import after_commit, session_scope
from orchestrator.dispatch import Capability, Lane, Requirement, lanes_served
from orchestrator.models import (
    Experiment,
    ExperimentStatus,
    KaggleLaunch,
    PlatformQuota,
    Pool,
    PoolUser,
    Worker,
)
from orchestrator.models.launch import LaunchStatus
from orchestrator.models.types import utcnow
from orchestrator.platforms import kaggle
from orchestrator.platforms.kaggle import KaggleError, KaggleGateway, KernelState, Quota
from orchestrator.runtime import Runtime
from orchestrator.services import accounts, enrollment, lifecycle
from orchestrator.settings import Settings
from orchestrator.urls import loopback_problem, public_url

log = logging.getLogger(__name__)

PLATFORM = "kaggle"
MAX_BACKOFF = timedelta(hours=1)
# A launch still "launching" after this died between its record and its push: ask Kaggle.
STALE_LAUNCHING = timedelta(minutes=5)
LOW_QUOTA_FRACTION = 0.1  # tell the admins when less than this share of the week's quota is left
QUOTA_WEEK = timedelta(days=7)
CAPABILITY = Capability(platform=PLATFORM, gpu_count=1, gpu_memory_mb=kaggle.GPU_MEMORY_MB)


@dataclass
class Tick:
    decision: str  # launched | launch-failed | in-flight | worker-alive | no-work | ...
    launch_id: int | None = None
    followed: dict[int, str] = field(default_factory=dict)


def need_key(settings: Settings) -> str:
    return f"{PLATFORM}:{settings.kaggle_username}"


def worker_pip(settings: Settings) -> str:
    from orchestrator.platforms.wheel import wheel_name

    return settings.worker_pip or public_url(settings, f"/api/v1/bootstrap/wheel/{wheel_name()}")


def tick(runtime: Runtime, *, gateway: KaggleGateway | None = None) -> Tick:
    settings = runtime.settings
    if not kaggle.enabled(settings):
        return Tick("disabled")
    gateway = gateway or KaggleGateway.from_settings(settings)
    followed = follow(runtime, gateway)
    quota = refresh_quota(runtime, gateway)
    result = maybe_launch(runtime, gateway, quota)
    result.followed = followed
    log.info("kaggle rotation: %s", result)
    return result


def follow(runtime: Runtime, gateway: KaggleGateway) -> dict[int, str]:
    """Ask Kaggle how each live launch is doing; record what changed."""
    now = utcnow()
    with session_scope(runtime.engine) as session:
        live = session.exec(
            select(KaggleLaunch).where(col(KaggleLaunch.finished_at).is_(None))
        ).all()
        targets = [
            (row.id, row.kernel_slug, row.status == LaunchStatus.launching)
            for row in live
            if row.id is not None
            and (row.status != LaunchStatus.launching or now - row.updated_at > STALE_LAUNCHING)
        ]
    followed: dict[int, str] = {}
    for launch_id, slug, orphaned in targets:
        try:
            state = gateway.status(slug)
        except KaggleError as exc:
            log.warning("kaggle rotation: status of %s: %s", slug, exc)
            if not orphaned:
                continue
            # Recorded, then the pusher died, and Kaggle knows no such kernel: it never went.
            state = KernelState(LaunchStatus.failed, f"push never confirmed: {exc}")
        with session_scope(runtime.engine) as session:
            row = session.get(KaggleLaunch, launch_id)
            if row is None or row.finished_at is not None:
                continue
            row.status = state.status
            row.updated_at = utcnow()
            if state.message:
                row.error = state.message[:4000]
            if state.status.is_final:
                row.finished_at = row.updated_at
                enrollment.close_launch(session, launch_id)
            session.add(row)
            followed[launch_id] = state.status
    return followed


def refresh_quota(runtime: Runtime, gateway: KaggleGateway) -> Quota | None:
    """The account's GPU quota from Kaggle, kept for the usage report; None if unreadable."""
    account = runtime.settings.kaggle_username
    try:
        quota: Quota | None = gateway.quota()
        error = None
    except KaggleError as exc:
        quota, error = None, str(exc)[:4000]
    try:
        _store_quota(runtime, account, quota, error)
    except IntegrityError:  # a concurrent tick inserted the row first: now it is an update
        _store_quota(runtime, account, quota, error)
    return quota


def _store_quota(runtime: Runtime, account: str, quota: Quota | None, error: str | None) -> None:
    with session_scope(runtime.engine) as session:
        row = session.get(PlatformQuota, (PLATFORM, account)) or PlatformQuota(
            platform=PLATFORM, account=account
        )
        row.fetched_at = utcnow()
        row.error = error
        if quota is not None:
            if _tell_admins(row, quota):  # before the row takes the new figures
                row.low_notified_at = row.fetched_at
                after_commit(session, lambda: _notify_low(runtime, account, quota))
            row.used_seconds = quota.used_seconds
            row.allowed_seconds = quota.allowed_seconds
            row.resets_at = quota.resets_at
        session.add(row)


def _tell_admins(row: PlatformQuota, quota: Quota) -> bool:
    """Quota under LOW_QUOTA_FRACTION, and nobody was told yet in this quota period (one
    period per reset time Kaggle reports; a week when it reports none)."""
    if (
        quota.allowed_seconds <= 0
        or quota.remaining_seconds >= LOW_QUOTA_FRACTION * quota.allowed_seconds
    ):
        return False
    if row.low_notified_at is None:
        return True
    if quota.resets_at is not None:
        return quota.resets_at != row.resets_at
    return utcnow() - row.low_notified_at >= QUOTA_WEEK


def _notify_low(runtime: Runtime, account: str, quota: Quota) -> None:
    from orchestrator.background import tasks

    runtime.queue.enqueue(
        tasks.notify_quota_low,
        platform=PLATFORM,
        account=account,
        used=quota.used_seconds,
        allowed=quota.allowed_seconds,
    )


def launch_lanes(session: Session, settings: Settings) -> frozenset[Lane]:
    """Whose work a launched kernel takes: its token's owner's (the first admin) and, with
    BATON_KAGGLE_POOL, that pool's users' work that names no secrets."""
    owner = accounts.first_admin(session)
    if owner is None:
        return frozenset()  # nobody to own the token: a kernel would be refused
    shared: list[int] = []
    if settings.kaggle_pool:
        shared = list(
            session.exec(
                select(PoolUser.user_id)
                .join(Pool, col(Pool.id) == col(PoolUser.pool_id))
                .where(Pool.name == settings.kaggle_pool)
            ).all()
        )
    return lanes_served(owner.id, shared)


def _matching_work(session: Session, settings: Settings) -> list[int]:
    """Queued experiments a launched Kaggle GPU worker could run and would be allowed to take;
    CPU-only work is not worth GPU quota."""
    lanes = launch_lanes(session, settings)
    queued = session.exec(
        select(Experiment)
        .where(Experiment.status == ExperimentStatus.queued)
        .order_by(col(Experiment.priority).desc(), col(Experiment.queued_at))
    ).all()
    matching = []
    for experiment in queued:
        requirement = Requirement.from_resources(experiment.resources)
        if (
            requirement.gpu
            and CAPABILITY.satisfies(requirement)
            and lifecycle.lane_of(experiment) in lanes
            and experiment.id is not None
        ):
            matching.append(experiment.id)
    return matching


def _worker_alive(session: Session, settings: Settings) -> bool:
    # An idle worker is seen at least once per claim long-poll; a busy one every heartbeat.
    window = timedelta(seconds=2 * settings.claim_wait_seconds + settings.lease_seconds)
    alive = session.exec(
        select(Worker.id).where(
            Worker.platform == PLATFORM,
            col(Worker.account).in_([settings.kaggle_username, ""]),
            col(Worker.last_seen_at) >= utcnow() - window,
        )
    ).first()
    return alive is not None


def _retry_at(session: Session, settings: Settings, key: str) -> datetime | None:
    """When the next launch may go, after a run of failed ones; None if the last one was fine."""
    recent = session.exec(
        select(KaggleLaunch)
        .where(KaggleLaunch.need_key == key)
        .order_by(col(KaggleLaunch.id).desc())
        .limit(8)
    ).all()
    failures = 0
    for row in recent:
        if not LaunchStatus(row.status).is_failure:
            break
        failures += 1
    if failures == 0 or recent[0].finished_at is None:
        return None
    wait = timedelta(seconds=settings.kaggle_retry_seconds * 2 ** (failures - 1))
    return recent[0].finished_at + min(wait, MAX_BACKOFF)


def maybe_launch(runtime: Runtime, gateway: KaggleGateway, quota: Quota | None) -> Tick:
    settings = runtime.settings
    key = need_key(settings)
    with session_scope(runtime.engine) as session:
        if session.exec(
            select(KaggleLaunch.id).where(
                KaggleLaunch.need_key == key, col(KaggleLaunch.finished_at).is_(None)
            )
        ).first():
            return Tick("in-flight")
        if _worker_alive(session, settings):
            return Tick("worker-alive")
        work = _matching_work(session, settings)
        if not work:
            return Tick("no-work")
        if quota is None:
            return Tick("quota-unknown")
        if quota.remaining_seconds < settings.kaggle_min_quota_hours * 3600:
            return Tick("quota-exhausted")
        retry_at = _retry_at(session, settings, key)
        if retry_at is not None and utcnow() < retry_at:
            return Tick("backing-off")
    if problem := loopback_problem(settings):
        log.warning("kaggle rotation: not launching: %s", problem)
        return Tick("no-public-url")
    return launch(runtime.engine, settings, gateway, quota=quota, experiment_ids=work)


def launch(
    engine: Engine,
    settings: Settings,
    gateway: KaggleGateway,
    *,
    quota: Quota,
    experiment_ids: list[int],
) -> Tick:
    """Record a launch, then push the kernel; its timeout is the session limit or what quota
    remains, whichever is less. Also `baton kaggle launch`, which skips the rotation's checks."""
    timeout = int(min(settings.kaggle_session_hours * 3600, quota.remaining_seconds))
    issued = _record_launch(engine, settings, experiment_ids=experiment_ids, timeout=timeout)
    if issued is None:
        return Tick("in-flight")
    return _push(engine, settings, gateway, issued=issued, timeout=timeout)


def _record_launch(
    engine: Engine, settings: Settings, *, experiment_ids: list[int], timeout: int
) -> enrollment.Issued | None:
    """The launch row and its enrollment code, committed before the push; None if another
    tick recorded one first."""
    try:
        with session_scope(engine) as session:
            row = KaggleLaunch(
                need_key=need_key(settings),
                kernel_slug=kaggle.kernel_slug(settings),
                experiment_ids=experiment_ids,
                timeout_seconds=timeout,
            )
            session.add(row)
            session.flush()
            assert row.id is not None
            return enrollment.issue_for_launch(
                session, settings, launch_id=row.id, timeout_seconds=timeout
            )
    except IntegrityError:
        return None


def _push(
    engine: Engine,
    settings: Settings,
    gateway: KaggleGateway,
    *,
    issued: enrollment.Issued,
    timeout: int,
) -> Tick:
    launch_id = issued.launch_id
    assert launch_id is not None
    files = kernel_folder_files(settings, timeout=timeout, enroll=issued)
    try:
        with tempfile.TemporaryDirectory(prefix="baton-kaggle-") as folder:
            for name, text in files.items():
                (Path(folder) / name).write_text(text)
            pushed = gateway.push(Path(folder), timeout_seconds=timeout)
        status, error, version = LaunchStatus.queued, None, pushed.version_number
    except KaggleError as exc:
        log.warning("kaggle rotation: launch %s failed: %s", launch_id, exc)
        status, error, version = LaunchStatus.failed, str(exc)[:4000], None
    with session_scope(engine) as session:
        row = session.get(KaggleLaunch, launch_id)
        assert row is not None
        row.status = status
        row.error = error
        row.version_number = version
        row.updated_at = utcnow()
        if status.is_final:
            row.finished_at = row.updated_at
            enrollment.close_launch(session, launch_id)
        session.add(row)
    return Tick(
        "launched" if status == LaunchStatus.queued else "launch-failed", launch_id=launch_id
    )


def kernel_folder_files(
    settings: Settings, *, timeout: int, enroll: enrollment.Issued
) -> dict[str, str]:
    return kaggle.kernel_files(
        settings, pip=worker_pip(settings), session_hours=timeout / 3600, enroll=enroll
    )
