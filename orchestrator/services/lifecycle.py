"""The experiment state machine. Every transition is written to the database first; the
Redis side (ready sets, leases) and notifications follow only after the commit."""

from __future__ import annotations

from sqlmodel import Session, select

from orchestrator.db import after_commit
from orchestrator.dispatch import Requirement
from orchestrator.dispatch.queue import Requeue
from orchestrator.errors import NotFound
from orchestrator.models import Attempt, AttemptOutcome, Experiment, ExperimentStatus
from orchestrator.models.types import utcnow
from orchestrator.runtime import Runtime


def lock_experiment(session: Session, experiment_id: int) -> Experiment:
    """Load an experiment for update (row lock on Postgres; SQLite already holds the write lock)."""
    experiment = session.exec(
        select(Experiment).where(Experiment.id == experiment_id).with_for_update()
    ).one_or_none()
    if experiment is None:
        raise NotFound(f"experiment {experiment_id} not found")
    return experiment


def open_attempt(session: Session, experiment_id: int) -> Attempt | None:
    return session.exec(
        select(Attempt).where(Attempt.experiment_id == experiment_id, Attempt.ended_at.is_(None))  # type: ignore[union-attr]
    ).first()


def requirement_of(experiment: Experiment) -> Requirement:
    return Requirement.from_resources(experiment.resources)


def _requeue_spec(experiment: Experiment) -> Requeue:
    return Requeue(
        requirement=requirement_of(experiment),
        priority=experiment.priority,
        queued_at_ms=int(experiment.queued_at.timestamp() * 1000),
    )


def queue(session: Session, runtime: Runtime, experiment: Experiment) -> None:
    """Mark queued now; put it in its ready set once the commit has happened."""
    now = utcnow()
    experiment.status = ExperimentStatus.queued
    experiment.queued_at = now
    experiment.updated_at = now
    session.add(experiment)
    session.flush()
    assert experiment.id is not None
    spec = _requeue_spec(experiment)
    experiment_id = experiment.id
    after_commit(
        session,
        lambda: runtime.dispatcher.enqueue(
            experiment_id=experiment_id,
            requirement=spec.requirement,
            priority=spec.priority,
            queued_at_ms=spec.queued_at_ms,
        ),
    )


def _finish(session: Session, runtime: Runtime, experiment: Experiment, status: ExperimentStatus) -> None:
    now = utcnow()
    experiment.status = status
    experiment.finished_at = now
    experiment.updated_at = now
    session.add(experiment)
    if experiment.notify and status != ExperimentStatus.canceled:
        experiment_id = experiment.id
        after_commit(session, lambda: notify(runtime, experiment_id=experiment_id))


def notify(runtime: Runtime, *, experiment_id: int | None) -> None:
    from orchestrator.background import tasks

    runtime.queue.enqueue(tasks.notify_experiment, experiment_id=experiment_id, retry=tasks.NOTIFY_RETRY)


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
        after_commit(session, lambda: runtime.dispatcher.end(experiment_id=experiment_id, token=token))
