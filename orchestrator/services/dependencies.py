"""The depends_on graph: validation at submit time and lookups for the state machine."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, TypeVar

from sqlmodel import Session, col, select

from orchestrator.errors import Invalid
from orchestrator.models import Experiment, ExperimentDependency, User

Node = TypeVar("Node", bound=Hashable)


def find_cycle(edges: Mapping[Node, Sequence[Node]]) -> list[Node] | None:
    """A cycle in ``node -> prerequisites`` as a path that starts and ends on one node."""
    state: dict[Node, int] = {}  # 1: on the current path, 2: done
    path: list[Node] = []

    def visit(node: Node) -> list[Node] | None:
        state[node] = 1
        path.append(node)
        for nxt in edges.get(node, ()):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in edges:
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def load_prerequisites(
    session: Session, *, user: User, ids: Sequence[int], field: str
) -> list[Experiment]:
    """The experiments named by ``ids``; 422 naming ``field`` for any the user cannot see."""
    found = {
        e.id: e
        for e in session.exec(select(Experiment).where(col(Experiment.id).in_(list(ids)))).all()
        if user.is_admin or e.owner_id == user.id
    }
    missing = [i for i in ids if i not in found]
    if missing:
        raise Invalid(
            f"{field}: no such experiment(s) {missing}",
            errors=[
                {"loc": ["body", *field.split(".")], "msg": f"unknown experiment(s) {missing}"}
            ],
        )
    return [found[i] for i in ids]


def link(session: Session, *, experiment_id: int, prerequisite_ids: Sequence[int]) -> None:
    for prerequisite in sorted(set(prerequisite_ids)):
        session.add(ExperimentDependency(experiment_id=experiment_id, depends_on_id=prerequisite))


def _linked(session: Session, *, other: Any, this: Any, experiment_id: int) -> list[Experiment]:
    """Experiments at the ``other`` end of dependency edges whose ``this`` end is the given one."""
    return list(
        session.exec(
            select(Experiment)
            .join(ExperimentDependency, col(other) == col(Experiment.id))
            .where(col(this) == experiment_id)
            .order_by(col(Experiment.id))
        ).all()
    )


def prerequisites(session: Session, experiment_id: int) -> list[Experiment]:
    return _linked(
        session,
        other=ExperimentDependency.depends_on_id,
        this=ExperimentDependency.experiment_id,
        experiment_id=experiment_id,
    )


def prerequisite_ids(session: Session, experiment_ids: Sequence[int]) -> dict[int, list[int]]:
    result: dict[int, list[int]] = {i: [] for i in experiment_ids}
    if experiment_ids:
        rows = session.exec(
            select(ExperimentDependency).where(
                col(ExperimentDependency.experiment_id).in_(list(experiment_ids))
            )
        )
        for row in rows:
            result[row.experiment_id].append(row.depends_on_id)
    return {i: sorted(v) for i, v in result.items()}


def dependents(session: Session, experiment_id: int) -> list[Experiment]:
    return _linked(
        session,
        other=ExperimentDependency.experiment_id,
        this=ExperimentDependency.depends_on_id,
        experiment_id=experiment_id,
    )
