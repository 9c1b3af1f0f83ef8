"""The experiment state machine. Every transition is written to the database first; the
Redis side (ready sets, leases) and notifications follow only after the commit."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from sqlmodel import Session, col, select

from orchestrator import metrics
from orchestrator.db import after_commit
from orchestrator.dispatch import Lane, Requirement
from orchestrator.dispatch.queue import Requeue
from orchestrator.errors import NotFound
from orchestrator.models import Attempt, AttemptOutcome, Experiment, ExperimentStatus, Worker
from orchestrator.models.types import utcnow
from orchestrator.runtime import Runtime
from orchestrator.services import dependencies


def locked_experiment(session: Session, experiment_id: int) -> Experiment | None:
    """Load an experiment for update (row lock on Postgres; SQLite already holds the write lock),
    with the values it has once the lock is ours: a copy this session read earlier is
    overwritten, or a decision would rest on what a concurrent commit already changed."""
    return session.exec(
        select(Experiment)
        .where(Experiment.id == experiment_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()


def lock_experiment(session: Session, experiment_id: int) -> Experiment:
    experiment = locked_experiment(session, experiment_id)
    if experiment is None:
        raise NotFound(f"experiment {experiment_id} not found")
    return experiment


def open_attempt(session: Session, experiment_id: int) -> Attempt | None:
    """The experiment's attempt that has not ended, as stored now (lock the experiment first)."""
    return session.exec(
        select(Attempt)
        .where(Attempt.experiment_id == experiment_id, col(Attempt.ended_at).is_(None))
        .execution_options(populate_existing=True)
    ).first()


def requirement_of(experiment: Experiment) -> Requirement:
    return Requirement.from_resources(experiment.resources)


def lane_of(experiment: Experiment) -> Lane:
    """Work naming secrets goes to a private lane: only its owner's own workers take it."""
    return Lane(experiment.owner_id, private=bool(experiment.secrets))


def _requeue_spec(experiment: Experiment) -> Requeue:
    return Requeue(
        requirement=requirement_of(experiment),
        lane=lane_of(experiment),
        priority=experiment.priority,
        queued_at_ms=int(experiment.queued_at.timestamp() * 1000),
    )


def make_ready(runtime: Runtime, experiment: Experiment) -> Callable[[], None]:
    """The Redis write that puts a queued experiment in its ready set (run after commit)."""
    assert experiment.id is not None
    spec = _requeue_spec(experiment)
    return partial(
        runtime.dispatcher.enqueue,
        experiment_id=experiment.id,
        requirement=spec.requirement,
        lane=spec.lane,
        priority=spec.priority,
        queued_at_ms=spec.queued_at_ms,
    )


def queue(session: Session, runtime: Runtime, experiment: Experiment) -> None:
    """Mark queued now; put it in its ready set once the commit has happened."""
    now = utcnow()
    experiment.status = ExperimentStatus.queued
    experiment.queued_at = now
    experiment.updated_at = now
    session.add(experiment)
    session.flush()
    after_commit(session, make_ready(runtime, experiment))


def _finish(
    session: Session, runtime: Runtime, experiment: Experiment, status: ExperimentStatus
) -> None:
    now = utcnow()
    experiment.status = status
    experiment.finished_at = now
    experiment.updated_at = now
    session.add(experiment)
    session.flush()
    if experiment.notify and status != ExperimentStatus.canceled:
        experiment_id = experiment.id
        after_commit(session, lambda: notify(runtime, experiment_id=experiment_id))
    _settle_dependents(session, runtime, experiment)


def start(session: Session, runtime: Runtime, experiment: Experiment) -> None:
    """A new (or retried) experiment: queue it, or wait for its prerequisites, or cancel it."""
    assert experiment.id is not None
    prerequisites = dependencies.prerequisites(session, experiment.id)
    broken = [p for p in prerequisites if p.status in _BROKEN]
    if broken:
        cancel(session, runtime, experiment, reason=_broken_reason(broken[0]))
    elif all(p.status == ExperimentStatus.succeeded for p in prerequisites):
        queue(session, runtime, experiment)
    else:
        experiment.status = ExperimentStatus.waiting
        experiment.updated_at = utcnow()
        session.add(experiment)


_BROKEN = frozenset({ExperimentStatus.failed, ExperimentStatus.lost, ExperimentStatus.canceled})


def _broken_reason(prerequisite: Experiment) -> str:
    return f"prerequisite experiment {prerequisite.id} ({prerequisite.name}) {prerequisite.status}"


def _settle_dependents(session: Session, runtime: Runtime, finished: Experiment) -> None:
    """A prerequisite finished: queue dependents it was the last one for, or cancel them all."""
    assert finished.id is not None
    for dependent in dependencies.dependents(session, finished.id):
        if dependent.status != ExperimentStatus.waiting:
            continue
        if finished.status in _BROKEN:
            cancel(session, runtime, dependent, reason=_broken_reason(finished))
        elif all(
            p.status == ExperimentStatus.succeeded
            for p in dependencies.prerequisites(session, dependent.id)  # type: ignore[arg-type]
        ):
            queue(session, runtime, dependent)


def retry(session: Session, runtime: Runtime, experiment: Experiment) -> None:
    """A finished experiment runs again from its latest checkpoint, with a fresh retry budget."""
    experiment.failure_count = 0
    experiment.cancel_requested = False
    experiment.finished_at = None
    experiment.error = None
    start(session, runtime, experiment)


def bind_attempt(
    session: Session, experiment: Experiment, *, worker: Worker, lease_token: str
) -> Attempt:
    """A worker took the queued experiment (locked by the caller): it runs as a new attempt."""
    assert experiment.id is not None and worker.id is not None
    now = utcnow()
    experiment.attempt_count += 1
    experiment.status = ExperimentStatus.running
    experiment.updated_at = now
    attempt = Attempt(
        experiment_id=experiment.id,
        number=experiment.attempt_count,
        worker_id=worker.id,
        platform=str(worker.platform),
        lease_token=lease_token,
        started_at=now,
        heartbeat_at=now,
        resumed_from_step=experiment.checkpoint_step,
    )
    session.add_all([experiment, attempt])
    return attempt


def cancel(session: Session, runtime: Runtime, experiment: Experiment, *, reason: str) -> None:
    """Queued or waiting: it never runs. Running: its worker is told on the next heartbeat."""
    was_queued = experiment.status == ExperimentStatus.queued
    experiment.cancel_requested = True
    experiment.error = reason
    if was_queued:
        requirement, lane = requirement_of(experiment), lane_of(experiment)
        experiment_id = experiment.id
        assert experiment_id is not None
        after_commit(
            session,
            lambda: runtime.dispatcher.remove(
                experiment_id=experiment_id, requirement=requirement, lane=lane
            ),
        )
    _finish(session, runtime, experiment, ExperimentStatus.canceled)


def refuse(session: Session, runtime: Runtime, experiment: Experiment, *, reason: str) -> None:
    """A queued experiment that cannot start at all (a secret it names is gone): failed,
    with the reason, without an attempt."""
    experiment.error = reason
    _finish(session, runtime, experiment, ExperimentStatus.failed)


def notify(runtime: Runtime, *, experiment_id: int | None) -> None:
    from orchestrator.background import tasks

    retry = tasks.notify_retry(runtime.settings)
    runtime.queue.enqueue(tasks.notify_experiment, experiment_id=experiment_id, retry=retry)


def end_attempt(
    session: Session,
    runtime: Runtime,
    *,
    experiment: Experiment,
    attempt: Attempt,
    outcome: AttemptOutcome,
    reason: str | None = None,
    exit_code: int | None = None,
    log_tail: str | None = None,
) -> None:
    """Close an attempt and move the experiment on: finish it, or requeue it for the next."""
    now = utcnow()
    attempt.outcome = outcome
    attempt.ended_at = now
    attempt.reason = reason
    attempt.exit_code = exit_code
    if log_tail is not None:
        attempt.log_tail = log_tail
    session.add(attempt)
    kind, seconds = experiment.kind, (now - attempt.started_at).total_seconds()
    after_commit(
        session, lambda: metrics.observe_attempt_end(kind=kind, outcome=outcome, seconds=seconds)
    )
    if outcome.counts_as_failure:
        experiment.failure_count += 1
    token = attempt.lease_token
    experiment_id = experiment.id
    assert experiment_id is not None

    requeue = False
    if experiment.status == ExperimentStatus.canceled or experiment.cancel_requested:
        if experiment.status != ExperimentStatus.canceled:
            _finish(session, runtime, experiment, ExperimentStatus.canceled)
    elif outcome == AttemptOutcome.succeeded:
        experiment.error = None
        _finish(session, runtime, experiment, ExperimentStatus.succeeded)
    elif outcome == AttemptOutcome.preempted:
        requeue = True
    elif experiment.failure_count >= experiment.max_attempts:
        experiment.error = reason
        _finish(session, runtime, experiment, ExperimentStatus(outcome.value))
    else:
        experiment.error = reason
        requeue = True

    if requeue:
        # Requeued work keeps its place by age: the original queue time is not reset.
        experiment.status = ExperimentStatus.queued
        experiment.updated_at = now
        session.add(experiment)
        spec = _requeue_spec(experiment)
        after_commit(
            session,
            lambda: runtime.dispatcher.end(experiment_id=experiment_id, token=token, requeue=spec),
        )
    else:
        after_commit(
            session, lambda: runtime.dispatcher.end(experiment_id=experiment_id, token=token)
        )
