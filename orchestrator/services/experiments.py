"""What users do with experiments: submit, look, cancel, retry."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, col, select

from orchestrator.db import after_commit
from orchestrator.errors import Conflict, NotFound
from orchestrator.kinds import get_kind, validate_config
from orchestrator.models import Attempt, Experiment, ExperimentStatus, ExperimentTag, User
from orchestrator.models.experiment import (
    AttemptPublic,
    ExperimentCreate,
    ExperimentDetail,
    ExperimentPage,
    ExperimentPublic,
)
from orchestrator.models.types import utcnow
from orchestrator.runtime import Runtime
from orchestrator.services import lifecycle


def create(session: Session, runtime: Runtime, *, owner: User, data: ExperimentCreate) -> Experiment:
    kind = get_kind(data.kind)
    config = validate_config(kind, data.config)
    assert owner.id is not None
    experiment = Experiment(
        name=data.name,
        kind=data.kind,
        priority=data.priority,
        max_attempts=data.max_attempts,
        notify=data.notify,
        owner_id=owner.id,
        config=config,
        resources=data.resources.model_dump(mode="json"),
    )
    session.add(experiment)
    session.flush()
    assert experiment.id is not None
    for tag in data.tags:
        session.add(ExperimentTag(experiment_id=experiment.id, tag=tag))
    lifecycle.queue(session, runtime, experiment)
    return experiment


def get_visible(session: Session, *, user: User, experiment_id: int) -> Experiment:
    """Users see their own experiments, admins every one; others read as 404, not 403."""
    experiment = session.get(Experiment, experiment_id)
    if experiment is None or (not user.is_admin and experiment.owner_id != user.id):
        raise NotFound(f"experiment {experiment_id} not found")
    return experiment


def tags_of(session: Session, experiment_ids: Sequence[int]) -> dict[int, list[str]]:
    tags: dict[int, list[str]] = {i: [] for i in experiment_ids}
    if experiment_ids:
        rows = session.exec(
            select(ExperimentTag).where(col(ExperimentTag.experiment_id).in_(experiment_ids))
        )
        for row in rows:
            tags[row.experiment_id].append(row.tag)
    return {i: sorted(t) for i, t in tags.items()}


def to_public(experiment: Experiment, tags: list[str]) -> ExperimentPublic:
    return ExperimentPublic.model_validate(experiment, update={"tags": tags})


def detail(session: Session, experiment: Experiment) -> ExperimentDetail:
    assert experiment.id is not None
    attempts = session.exec(
        select(Attempt).where(Attempt.experiment_id == experiment.id).order_by(col(Attempt.number))
    ).all()
    return ExperimentDetail.model_validate(
        experiment,
        update={
            "tags": tags_of(session, [experiment.id])[experiment.id],
            "attempts": [AttemptPublic.model_validate(a) for a in attempts],
        },
    )


def list_page(
    session: Session,
    *,
    user: User,
    status: ExperimentStatus | None,
    kind: str | None,
    tag: str | None,
    cursor: int | None,
    limit: int,
) -> ExperimentPage:
    """Newest first; ``cursor`` is the last id of the previous page."""
    query = select(Experiment)
    if not user.is_admin:
        query = query.where(Experiment.owner_id == user.id)
    if status is not None:
        query = query.where(Experiment.status == status)
    if kind is not None:
        query = query.where(Experiment.kind == kind)
    if tag is not None:
        query = query.join(ExperimentTag, col(ExperimentTag.experiment_id) == col(Experiment.id)).where(
            ExperimentTag.tag == tag
        )
    if cursor is not None:
        query = query.where(col(Experiment.id) < cursor)
    rows = session.exec(query.order_by(col(Experiment.id).desc()).limit(limit + 1)).all()
    page = list(rows[:limit])
    tags = tags_of(session, [e.id for e in page if e.id is not None])
    next_cursor = page[-1].id if len(rows) > limit and page else None
    return ExperimentPage(
        items=[to_public(e, tags[e.id]) for e in page if e.id is not None], next_cursor=next_cursor
    )


def cancel(session: Session, runtime: Runtime, *, user: User, experiment_id: int) -> Experiment:
    """Queued: it never runs. Running: the worker is told on its next heartbeat."""
    get_visible(session, user=user, experiment_id=experiment_id)
    experiment = lifecycle.lock_experiment(session, experiment_id)
    if experiment.status.is_final:
        raise Conflict(f"experiment {experiment_id} is already {experiment.status}")
    was_queued = experiment.status == ExperimentStatus.queued
    now = utcnow()
    experiment.cancel_requested = True
    experiment.status = ExperimentStatus.canceled
    experiment.finished_at = now
    experiment.updated_at = now
    session.add(experiment)
    if was_queued:
        requirement = lifecycle.requirement_of(experiment)
        after_commit(
            session,
            lambda: runtime.dispatcher.remove(experiment_id=experiment_id, requirement=requirement),
        )
    return experiment


def retry(session: Session, runtime: Runtime, *, user: User, experiment_id: int) -> Experiment:
    """Run a finished experiment again from its latest checkpoint, with a fresh retry budget."""
    get_visible(session, user=user, experiment_id=experiment_id)
    experiment = lifecycle.lock_experiment(session, experiment_id)
    if not experiment.status.is_final or lifecycle.open_attempt(session, experiment_id) is not None:
        raise Conflict(f"experiment {experiment_id} is {experiment.status}: only a finished one can be retried")
    if experiment.status == ExperimentStatus.succeeded:
        raise Conflict(f"experiment {experiment_id} already succeeded")
    experiment.failure_count = 0
    experiment.cancel_requested = False
    experiment.finished_at = None
    experiment.error = None
    lifecycle.queue(session, runtime, experiment)
    return experiment
