"""What users do with experiments: submit, look, cancel, retry."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, col, select

from orchestrator.bundles import BundleStore
from orchestrator.errors import Conflict, Invalid, NotFound
from orchestrator.kinds import get_kind, validate_config
from orchestrator.models import Attempt, Experiment, ExperimentStatus, ExperimentTag, User
from orchestrator.models.experiment import (
    AttemptPublic,
    ExperimentCreate,
    ExperimentDetail,
    ExperimentPage,
    ExperimentPublic,
)
from orchestrator.runtime import Runtime
from orchestrator.services import dependencies, lifecycle, user_secrets


def create(
    session: Session,
    runtime: Runtime,
    *,
    owner: User,
    data: ExperimentCreate,
    group_id: int | None = None,
    field: str = "",
    start: bool = True,
) -> Experiment:
    """Validate and store one experiment; ``start`` queues it (or makes it wait).

    ``field`` prefixes error locations when the experiment is part of a larger request.
    """
    kind = get_kind(data.kind, field=f"{field}kind")
    config = validate_config(kind, data.config, field=f"{field}config")
    code = _check_code(runtime, data, config, field=field)
    prerequisites = dependencies.load_prerequisites(
        session, user=owner, ids=data.depends_on, field=f"{field}depends_on"
    )
    user_secrets.check_named(session, user=owner, names=data.secrets, field=field)
    assert owner.id is not None
    experiment = Experiment(
        name=data.name,
        kind=data.kind,
        priority=data.priority,
        max_attempts=data.max_attempts,
        notify=data.notify,
        owner_id=owner.id,
        group_id=group_id,
        config=config,
        resources=data.resources.model_dump(mode="json"),
        code=code,
        requirements=data.requirements,
        secrets=data.secrets,
    )
    session.add(experiment)
    session.flush()
    assert experiment.id is not None
    for tag in data.tags:
        session.add(ExperimentTag(experiment_id=experiment.id, tag=tag))
    dependencies.link(
        session, experiment_id=experiment.id, prerequisite_ids=[p.id for p in prerequisites if p.id]
    )
    if start:
        session.flush()
        lifecycle.start(session, runtime, experiment)
    return experiment


def _check_code(
    runtime: Runtime, data: ExperimentCreate, config: dict[str, object], *, field: str
) -> dict[str, str] | None:
    """The code as stored; 422 for a bundle this control plane does not hold."""
    if data.code is None:
        return None
    if config.get("workdir"):
        raise Invalid(
            f"{field}config.workdir: a directory on the worker's own disk; an experiment with "
            "`code` runs in its unpacked code instead (leave workdir out)"
        )
    digest = data.code.bundle
    if digest is not None and BundleStore.from_settings(runtime.settings).size(digest) is None:
        raise Invalid(
            f"{field}code.bundle: no bundle {digest} on this control plane "
            "(upload it first: POST /api/v1/bundles, or `baton submit --workdir DIR`)"
        )
    return data.code.stored()


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


def to_public(experiment: Experiment, tags: list[str], depends_on: list[int]) -> ExperimentPublic:
    return ExperimentPublic.model_validate(
        experiment, update={"tags": tags, "depends_on": depends_on}
    )


def public_list(session: Session, experiments: Sequence[Experiment]) -> list[ExperimentPublic]:
    ids = [e.id for e in experiments if e.id is not None]
    tags = tags_of(session, ids)
    prerequisites = dependencies.prerequisite_ids(session, ids)
    return [to_public(e, tags[e.id], prerequisites[e.id]) for e in experiments if e.id is not None]


def detail(session: Session, experiment: Experiment) -> ExperimentDetail:
    assert experiment.id is not None
    attempts = session.exec(
        select(Attempt).where(Attempt.experiment_id == experiment.id).order_by(col(Attempt.number))
    ).all()
    return ExperimentDetail.model_validate(
        experiment,
        update={
            "tags": tags_of(session, [experiment.id])[experiment.id],
            "depends_on": dependencies.prerequisite_ids(session, [experiment.id])[experiment.id],
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
        query = query.join(
            ExperimentTag, col(ExperimentTag.experiment_id) == col(Experiment.id)
        ).where(ExperimentTag.tag == tag)
    if cursor is not None:
        query = query.where(col(Experiment.id) < cursor)
    rows = session.exec(query.order_by(col(Experiment.id).desc()).limit(limit + 1)).all()
    page = list(rows[:limit])
    next_cursor = page[-1].id if len(rows) > limit and page else None
    return ExperimentPage(items=public_list(session, page), next_cursor=next_cursor)


def cancel(session: Session, runtime: Runtime, *, user: User, experiment_id: int) -> Experiment:
    get_visible(session, user=user, experiment_id=experiment_id)
    experiment = lifecycle.lock_experiment(session, experiment_id)
    if experiment.status.is_final:
        raise Conflict(f"experiment {experiment_id} is already {experiment.status}")
    lifecycle.cancel(session, runtime, experiment, reason=f"canceled by {user.email}")
    return experiment


def retry(session: Session, runtime: Runtime, *, user: User, experiment_id: int) -> Experiment:
    """Run a finished experiment again from its latest checkpoint, with a fresh retry budget."""
    get_visible(session, user=user, experiment_id=experiment_id)
    experiment = lifecycle.lock_experiment(session, experiment_id)
    if not experiment.status.is_final or lifecycle.open_attempt(session, experiment_id) is not None:
        raise Conflict(
            f"experiment {experiment_id} is {experiment.status}: only a finished one can be retried"
        )
    if experiment.status == ExperimentStatus.succeeded:
        raise Conflict(f"experiment {experiment_id} already succeeded")
    lifecycle.retry(session, runtime, experiment)
    return experiment
