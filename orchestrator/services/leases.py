"""What workers do: register, claim, heartbeat, complete, fail, release.

The database decides whether a lease token is current: it is the token of the experiment's
open attempt. Any other token is stale (409) and changes nothing, even after Redis lost its
own copy of the leases.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlmodel import Session, col, select

from orchestrator.bundles import BundleStore
from orchestrator.db import after_commit, session_scope
from orchestrator.dispatch import Capability, Lane, lanes_served
from orchestrator.dispatch.queue import now_ms
from orchestrator.errors import Forbidden, Invalid, NotFound, StaleLease
from orchestrator.kinds import get_kind
from orchestrator.models import (
    Attempt,
    AttemptOutcome,
    Experiment,
    ExperimentStatus,
    Worker,
    WorkerToken,
)
from orchestrator.models.types import utcnow
from orchestrator.models.worker import WorkerRegister
from orchestrator.platforms import wheel
from orchestrator.runtime import Runtime
from orchestrator.services import (
    dependencies,
    lifecycle,
    metric_history,
    pools,
    retention,
    usage,
    user_secrets,
)
from orchestrator.urls import public_url
from worker.checkpoints.base import CheckpointRef

LOG_TAIL_LIMIT = 64 * 1024
COMMIT_PATTERN = r"^([0-9a-f]{40}|[0-9a-f]{64})$"  # SHA-1 or SHA-256 object names
SEEN_TOUCH_INTERVAL = timedelta(seconds=5)
MAX_STEP = 10**12 - 1  # a checkpoint key holds the step in 12 digits


class CheckpointReport(BaseModel):
    """The newest checkpoint this attempt uploaded: ``<experiment>/<attempt>-<step>``."""

    key: str = Field(min_length=1, max_length=512)
    step: int = Field(ge=0, le=MAX_STEP)


class LeaseRequest(BaseModel):
    lease_token: str = Field(min_length=1, max_length=64)


class LeaseReport(LeaseRequest):
    """What every lease call may carry: progress so far and the newest uploaded checkpoint."""

    progress_step: int | None = Field(default=None, ge=0)
    progress_total: int | None = Field(default=None, ge=0)
    metrics: dict[str, float] = Field(default_factory=dict, max_length=200)
    checkpoint: CheckpointReport | None = None
    # The commit the experiment's git ref resolved to on the worker.
    code_commit: str | None = Field(default=None, pattern=COMMIT_PATTERN)


class HeartbeatIn(LeaseReport):
    pass


class HeartbeatOut(BaseModel):
    action: Literal["continue", "cancel"]
    lease_seconds: float


class CompleteIn(LeaseReport):
    result: dict[str, Any] = Field(default_factory=dict)
    log_tail: str | None = Field(default=None, max_length=LOG_TAIL_LIMIT)


class FailIn(LeaseReport):
    exit_code: int | None = None
    reason: str = Field(default="the job exited with an error", max_length=4000)
    log_tail: str | None = Field(default=None, max_length=LOG_TAIL_LIMIT)


class ReleaseIn(LeaseReport):
    reason: Literal["preempted", "canceled", "shutdown"] = "preempted"
    detail: str | None = Field(default=None, max_length=4000)
    log_tail: str | None = Field(default=None, max_length=LOG_TAIL_LIMIT)


class ResumePoint(BaseModel):
    key: str
    step: int


class Input(BaseModel):
    """A prerequisite (depends_on) whose final checkpoint and result the job may read."""

    experiment_id: int
    name: str
    kind: str
    checkpoint: ResumePoint | None
    result: dict[str, Any] | None


class Grant(BaseModel):
    """What a worker needs to run one attempt."""

    experiment_id: int
    name: str
    attempt: int
    lease_token: str
    kind: str
    entrypoint: str | None
    config: dict[str, Any]
    resume: ResumePoint | None
    inputs: list[Input] = Field(default_factory=list)
    checkpoint_url: str
    heartbeat_seconds: float
    lease_seconds: float
    # {"bundle": digest, "size": bytes, "url": download URL} or {"git": url, "ref": ref}.
    code: dict[str, Any] | None = None
    requirements: list[str] = Field(default_factory=list)
    # The wheel providing the entrypoint module, for a worker that cannot import it.
    package_wheel: str | None = None
    # The secrets the experiment names, name -> value: only ever in a grant to one of the
    # experiment owner's own workers (work naming secrets is never shared through a pool).
    secrets: dict[str, str] = Field(default_factory=dict)


def register_worker(session: Session, *, token: WorkerToken, data: WorkerRegister) -> Worker:
    assert token.id is not None
    worker = Worker(token_id=token.id, **data.model_dump())
    session.add(worker)
    session.flush()
    return worker


def owned_worker(session: Session, *, token: WorkerToken, worker_id: int) -> Worker:
    worker = session.get(Worker, worker_id)
    if worker is None:
        raise NotFound(f"worker {worker_id} not found: register again")
    if worker.token_id != token.id:
        raise Forbidden(f"worker {worker_id} belongs to another worker token")
    return worker


def capability_of(worker: Worker) -> Capability:
    return Capability(
        platform=str(worker.platform),
        gpu_count=worker.gpu_count,
        gpu_memory_mb=worker.gpu_memory_mb,
    )


@dataclass(frozen=True)
class _Identity:
    worker_id: int
    capability: Capability
    # Whose work this worker takes (see orchestrator.dispatch.queue.Lane).
    lanes: frozenset[Lane]


def claim_once(runtime: Runtime, *, token: WorkerToken, worker_id: int) -> Grant | None:
    """Take the best ready experiment for this worker, or None. Runs in its own transaction."""
    with session_scope(runtime.engine) as session:
        worker = owned_worker(session, token=token, worker_id=worker_id)
        now = utcnow()
        # Not on every poll: a wake-up runs this in every waiting claim at once.
        if now - worker.last_seen_at > SEEN_TOUCH_INTERVAL:
            worker.last_seen_at = now
            session.add(worker)
        assert token.id is not None
        lanes = lanes_served(token.owner_id, pools.shared_owner_ids(session, token_id=token.id))
        me = _Identity(worker_id=worker_id, capability=capability_of(worker), lanes=lanes)
        draining = worker.draining
    if draining:  # finishes what it runs, takes nothing new: the claim waits, then 204
        return None
    lease_ms = int(runtime.settings.lease_seconds * 1000)
    # A ready entry can be stale (canceled meanwhile, or re-added by reconcile): skip those.
    for _ in range(100):
        claimed = runtime.dispatcher.claim(
            capability=me.capability, lanes=me.lanes, worker_id=me.worker_id, lease_ms=lease_ms
        )
        if claimed is None:
            return None
        try:
            with session_scope(runtime.engine) as session:
                grant = _bind(session, runtime, me, claimed.experiment_id, claimed.token)
        except Exception:
            # Redis handed the experiment out but the database did not take it: give it back.
            runtime.dispatcher.end(experiment_id=claimed.experiment_id, token=claimed.token)
            _requeue_if_queued(runtime, claimed.experiment_id)
            raise
        if grant is not None:
            return grant
        runtime.dispatcher.end(experiment_id=claimed.experiment_id, token=claimed.token)
        # Still queued means it sat in a ready set this worker must not take from: put it
        # back where it belongs.
        _requeue_if_queued(runtime, claimed.experiment_id)
    return None


def _requeue_if_queued(runtime: Runtime, experiment_id: int) -> None:
    with session_scope(runtime.engine) as session:
        experiment = session.get(Experiment, experiment_id)
        if experiment is not None and experiment.status == ExperimentStatus.queued:
            lifecycle.make_ready(runtime, experiment)()


def _bind(
    session: Session, runtime: Runtime, me: _Identity, experiment_id: int, token: str
) -> Grant | None:
    experiment = lifecycle.locked_experiment(session, experiment_id)
    if experiment is None or experiment.status != ExperimentStatus.queued:
        return None
    if lifecycle.open_attempt(session, experiment_id) is not None:
        return None
    if lifecycle.lane_of(experiment) not in me.lanes:
        return None  # another user's work, or work naming secrets, on a shared worker: never
    try:
        secrets = user_secrets.values_for(
            session, runtime.settings, owner_id=experiment.owner_id, names=experiment.secrets
        )
    except user_secrets.SecretUnavailable as exc:
        lifecycle.refuse(session, runtime, experiment, reason=f"cannot start: {exc}")
        return None
    worker = session.get(Worker, me.worker_id)
    assert worker is not None
    attempt = lifecycle.bind_attempt(session, experiment, worker=worker, lease_token=token)
    resume = _resume_point(experiment)
    settings = runtime.settings
    inputs = [
        Input(
            experiment_id=p.id or 0,
            name=p.name,
            kind=p.kind,
            checkpoint=_resume_point(p),
            result=p.result,
        )
        for p in dependencies.prerequisites(session, experiment_id)
    ]
    kind = get_kind(experiment.kind)
    package = wheel.WHEELS[kind.wheel] if kind.wheel else None
    return Grant(
        experiment_id=experiment_id,
        name=experiment.name,
        attempt=attempt.number,
        lease_token=token,
        kind=experiment.kind,
        entrypoint=kind.entrypoint,
        code=_code_grant(runtime, experiment),
        requirements=experiment.requirements,
        package_wheel=public_url(settings, package.path) if package else None,
        config=experiment.config,
        resume=resume,
        inputs=inputs,
        checkpoint_url=settings.worker_checkpoint_url,
        heartbeat_seconds=settings.heartbeat_seconds,
        lease_seconds=settings.lease_seconds,
        secrets=secrets,
    )


def _code_grant(runtime: Runtime, experiment: Experiment) -> dict[str, Any] | None:
    code = experiment.code
    if not code or "bundle" not in code:
        return code
    digest = code["bundle"]
    return {
        "bundle": digest,
        "size": BundleStore.from_settings(runtime.settings).size(digest),
        "url": public_url(runtime.settings, f"/api/v1/bundles/{digest}"),
    }


def bundle_leased(session: Session, *, token: WorkerToken, digest: str) -> bool:
    """Whether a worker of ``token`` holds an open lease on an experiment that runs ``digest``."""
    codes = session.exec(
        select(Experiment.code)
        .join(Attempt, col(Attempt.experiment_id) == col(Experiment.id))
        .join(Worker, col(Worker.id) == col(Attempt.worker_id))
        .where(Worker.token_id == token.id, col(Attempt.ended_at).is_(None))
    ).all()
    return any(code and code.get("bundle") == digest for code in codes)


def _resume_point(experiment: Experiment) -> ResumePoint | None:
    if experiment.checkpoint_key is None or experiment.checkpoint_step is None:
        return None
    return ResumePoint(key=experiment.checkpoint_key, step=experiment.checkpoint_step)


def current_lease(
    session: Session, *, token: WorkerToken, lease_token: str
) -> tuple[Experiment, Attempt]:
    """The open attempt holding ``lease_token``, its experiment locked: the check before every
    lease operation. 409 if the lease token is not current; 403 if the lease belongs to a
    worker of another worker token (a token can act only on its own workers' leases)."""
    attempt = session.exec(select(Attempt).where(Attempt.lease_token == lease_token)).one_or_none()
    if attempt is None:
        raise StaleLease("unknown lease token")
    worker = session.get(Worker, attempt.worker_id) if attempt.worker_id is not None else None
    if worker is None or worker.token_id != token.id:
        raise Forbidden("this lease belongs to a worker of another worker token")
    experiment = lifecycle.lock_experiment(session, attempt.experiment_id)
    session.refresh(attempt)
    if attempt.ended_at is not None:
        raise StaleLease(
            f"lease of attempt {attempt.number} of experiment {attempt.experiment_id} "
            f"already ended ({attempt.outcome})",
            outcome=attempt.outcome,
        )
    worker.last_seen_at = utcnow()
    session.add(worker)
    return experiment, attempt


def _apply_report(
    session: Session,
    runtime: Runtime,
    experiment: Experiment,
    attempt: Attempt,
    report: LeaseReport,
) -> None:
    if report.checkpoint is not None:
        _check_own_checkpoint(experiment, attempt, report.checkpoint)
    usage.record_busy(session, attempt=attempt)  # GPU time since the last report
    attempt.heartbeat_at = utcnow()
    if report.progress_step is not None:
        attempt.progress_step = report.progress_step
    if report.progress_total is not None:
        attempt.progress_total = report.progress_total
    if report.metrics:
        attempt.metrics = {**attempt.metrics, **report.metrics}
    if report.code_commit is not None:
        attempt.code_commit = report.code_commit
    checkpoint = report.checkpoint
    if checkpoint is not None:
        if checkpoint.step != attempt.last_checkpoint_step:
            retention.request(session, runtime)  # a new checkpoint may push the bucket over budget
        attempt.last_checkpoint_step = checkpoint.step
        if experiment.checkpoint_step is None or checkpoint.step >= experiment.checkpoint_step:
            experiment.checkpoint_key = checkpoint.key
            experiment.checkpoint_step = checkpoint.step


def _check_own_checkpoint(
    experiment: Experiment, attempt: Attempt, checkpoint: CheckpointReport
) -> None:
    """422 unless the key is where this attempt's upload of that step goes: a worker cannot make
    an experiment resume from another experiment's (or attempt's) checkpoint."""
    own = CheckpointRef(
        step=checkpoint.step, attempt=attempt.number, experiment_id=str(experiment.id)
    ).key
    if checkpoint.key != own:
        raise Invalid(
            f"checkpoint.key {checkpoint.key!r} is not this attempt's checkpoint of step "
            f"{checkpoint.step} (expected {own!r})"
        )


def heartbeat(
    session: Session, runtime: Runtime, *, token: WorkerToken, data: HeartbeatIn
) -> HeartbeatOut:
    experiment, attempt = current_lease(session, token=token, lease_token=data.lease_token)
    _apply_report(session, runtime, experiment, attempt, data)
    session.add_all([experiment, attempt])
    metric_history.record(session, attempt, step=data.progress_step, values=data.metrics)
    lease_ms = int(runtime.settings.lease_seconds * 1000)
    experiment_id, lease_token = attempt.experiment_id, attempt.lease_token
    worker_id = attempt.worker_id or 0
    after_commit(
        session,
        lambda: runtime.dispatcher.extend(
            experiment_id=experiment_id,
            token=lease_token,
            worker_id=worker_id,
            expires_ms=now_ms() + lease_ms,
        ),
    )
    action: Literal["continue", "cancel"] = "cancel" if experiment.cancel_requested else "continue"
    return HeartbeatOut(action=action, lease_seconds=runtime.settings.lease_seconds)


def complete(
    session: Session, runtime: Runtime, *, token: WorkerToken, data: CompleteIn
) -> Experiment:
    """Exactly once: only the open attempt's token can complete, and completing closes it."""
    experiment, attempt = current_lease(session, token=token, lease_token=data.lease_token)
    _apply_report(session, runtime, experiment, attempt, data)
    if experiment.status == ExperimentStatus.running:
        experiment.result = data.result
    lifecycle.end_attempt(
        session,
        runtime,
        experiment=experiment,
        attempt=attempt,
        outcome=AttemptOutcome.succeeded,
        log_tail=data.log_tail,
    )
    return experiment


def fail(session: Session, runtime: Runtime, *, token: WorkerToken, data: FailIn) -> Experiment:
    experiment, attempt = current_lease(session, token=token, lease_token=data.lease_token)
    _apply_report(session, runtime, experiment, attempt, data)
    lifecycle.end_attempt(
        session,
        runtime,
        experiment=experiment,
        attempt=attempt,
        outcome=AttemptOutcome.failed,
        reason=data.reason,
        exit_code=data.exit_code,
        log_tail=data.log_tail,
    )
    return experiment


def release(
    session: Session, runtime: Runtime, *, token: WorkerToken, data: ReleaseIn
) -> Experiment:
    """Give the lease back without an error: preempted work is requeued and resumes."""
    experiment, attempt = current_lease(session, token=token, lease_token=data.lease_token)
    _apply_report(session, runtime, experiment, attempt, data)
    outcome = AttemptOutcome.canceled if experiment.cancel_requested else AttemptOutcome.preempted
    lifecycle.end_attempt(
        session,
        runtime,
        experiment=experiment,
        attempt=attempt,
        outcome=outcome,
        reason=data.detail or data.reason,
        log_tail=data.log_tail,
    )
    return experiment
