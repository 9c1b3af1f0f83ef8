"""Experiment groups: submit branches together, compare them once all have finished."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from orchestrator.errors import Invalid, NotFound
from orchestrator.models import Attempt, Experiment, ExperimentGroup, User, Worker
from orchestrator.models.experiment import ExperimentCreate
from orchestrator.models.group import ComparisonRow, GroupCreate, GroupDetail
from orchestrator.models.types import utcnow
from orchestrator.runtime import Runtime
from orchestrator.services import dependencies, experiments, lifecycle


def _merge(base: dict[str, object], override: dict[str, object]) -> dict[str, object]:
    """Deep merge: nested dicts combine, the override wins on everything else."""
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            merged[key] = _merge(current, value)
        else:
            merged[key] = value
    return merged


def create(
    session: Session, runtime: Runtime, *, owner: User, data: GroupCreate
) -> ExperimentGroup:
    """Store the group and every member in one transaction; refuse cycles and unknown keys."""
    keys = {m.key for m in data.experiments}
    edges: dict[str, list[str]] = {}
    for index, member in enumerate(data.experiments):
        unknown = [d for d in member.depends_on if isinstance(d, str) and d not in keys]
        if unknown:
            raise Invalid(
                f"experiments.{index}.depends_on: unknown key(s) {unknown} (known: {sorted(keys)})"
            )
        edges[member.key] = [d for d in member.depends_on if isinstance(d, str)]
    cycle = dependencies.find_cycle(edges)
    if cycle is not None:
        raise Invalid(
            "experiments: depends_on has a cycle: " + " -> ".join(map(str, cycle)),
            errors=[{"loc": ["body", "experiments"], "msg": "dependency cycle", "cycle": cycle}],
        )
    assert owner.id is not None
    group = ExperimentGroup(owner_id=owner.id, name=data.name, compare=data.compare)
    session.add(group)
    session.flush()
    by_key: dict[str, Experiment] = {}
    # Prerequisites first, so every member can link to ids that already exist.
    for key in _topological(edges):
        index, member = next((i, m) for i, m in enumerate(data.experiments) if m.key == key)
        depends_on = [d if isinstance(d, int) else by_key[d].id for d in member.depends_on]
        request = ExperimentCreate(
            name=member.name,
            kind=member.kind,
            priority=member.priority,
            max_attempts=member.max_attempts,
            notify=member.notify,
            config=_merge(data.shared_config, member.config),
            resources=member.resources,
            tags=member.tags,
            depends_on=[d for d in depends_on if d is not None],
            code=member.code,
            requirements=member.requirements,
            secrets=member.secrets,
        )
        by_key[key] = experiments.create(
            session,
            runtime,
            owner=owner,
            data=request,
            group_id=group.id,
            field=f"experiments.{index}.",
            start=False,
        )
    session.flush()
    for key in _topological(edges):
        lifecycle.start(session, runtime, by_key[key])
    return group


def _topological(edges: dict[str, list[str]]) -> list[str]:
    order: list[str] = []
    seen: set[str] = set()

    def visit(node: str) -> None:
        if node in seen:
            return
        seen.add(node)
        for prerequisite in edges.get(node, []):
            visit(prerequisite)
        order.append(node)

    for node in edges:
        visit(node)
    return order


def get_visible(session: Session, *, user: User, group_id: int) -> ExperimentGroup:
    group = session.get(ExperimentGroup, group_id)
    if group is None or (not user.is_admin and group.owner_id != user.id):
        raise NotFound(f"group {group_id} not found")
    return group


def _minutes(start: datetime, end: datetime | None) -> float:
    return max(0.0, ((end or utcnow()) - start).total_seconds() / 60)


def _comparison(
    session: Session, members: list[Experiment], columns: list[str]
) -> list[ComparisonRow]:
    ids = [m.id for m in members]
    attempts = session.exec(select(Attempt).where(col(Attempt.experiment_id).in_(ids))).all()
    worker_ids = {a.worker_id for a in attempts if a.worker_id is not None}
    gpus = {
        w.id: w.gpu_count
        for w in session.exec(select(Worker).where(col(Worker.id).in_(worker_ids))).all()
    }
    rows = []
    for member in members:
        mine = [a for a in attempts if a.experiment_id == member.id]
        result = member.result or {}
        rows.append(
            ComparisonRow(
                experiment_id=member.id or 0,
                name=member.name,
                status=str(member.status),
                attempts=len(mine),
                wall_minutes=round(sum(_minutes(a.started_at, a.ended_at) for a in mine), 3),
                gpu_minutes=round(
                    sum(
                        _minutes(a.started_at, a.ended_at) * gpus.get(a.worker_id or 0, 0)
                        for a in mine
                    ),
                    3,
                ),
                values={c: _number(result.get(c)) for c in columns},
            )
        )
    return rows


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def detail(session: Session, group: ExperimentGroup) -> GroupDetail:
    members = list(
        session.exec(
            select(Experiment).where(Experiment.group_id == group.id).order_by(col(Experiment.id))
        ).all()
    )
    finished = all(m.status.is_final for m in members)
    columns = group.compare or sorted(
        {k for m in members for k, v in (m.result or {}).items() if _number(v) is not None}
    )
    assert group.id is not None
    return GroupDetail(
        id=group.id,
        name=group.name,
        owner_id=group.owner_id,
        created_at=group.created_at,
        status="finished" if finished else "running",
        experiments=experiments.public_list(session, members),
        comparison=_comparison(session, members, columns) if finished else None,
        columns=columns,
    )
