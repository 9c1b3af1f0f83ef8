"""Metric history: each heartbeat's metrics kept as a sample, for charts.

An attempt keeps at most ``MAX_SAMPLES``. Past that, every second sample is dropped, so a
long run keeps the shape of its whole curve (the early part included) at a coarser grain
instead of losing its beginning.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from orchestrator.models import Attempt, MetricSample

MAX_SAMPLES = 500


def record(session: Session, attempt: Attempt, *, step: int | None, values: dict[str, Any]) -> None:
    """Append a sample unless it repeats the newest one (agents resend metrics each beat)."""
    if not values or attempt.id is None:
        return
    step = step if step is not None else attempt.progress_step
    newest = session.exec(
        select(MetricSample)
        .where(MetricSample.attempt_id == attempt.id)
        .order_by(col(MetricSample.id).desc())
        .limit(1)
    ).first()
    if newest is not None and newest.step == step and newest.values == values:
        return
    session.add(MetricSample(attempt_id=attempt.id, step=step, values=dict(values)))
    session.flush()
    _thin(session, attempt.id)


def _thin(session: Session, attempt_id: int) -> None:
    count = session.exec(
        select(func.count()).select_from(MetricSample).where(MetricSample.attempt_id == attempt_id)
    ).one()
    if count <= MAX_SAMPLES:
        return
    ids = session.exec(
        select(MetricSample.id)
        .where(MetricSample.attempt_id == attempt_id)
        .order_by(col(MetricSample.id))
    ).all()
    # Odd positions go; the newest sample always stays.
    doomed = [i for i in ids[1:-1:2] if i is not None]
    session.execute(delete(MetricSample).where(col(MetricSample.id).in_(doomed)))


def samples_of(session: Session, attempt_ids: Sequence[int]) -> list[MetricSample]:
    """Samples of these attempts, oldest first (attempts in the order given)."""
    if not attempt_ids:
        return []
    rows = session.exec(
        select(MetricSample)
        .where(col(MetricSample.attempt_id).in_(attempt_ids))
        .order_by(col(MetricSample.id))
    ).all()
    order = {a: i for i, a in enumerate(attempt_ids)}
    return sorted(rows, key=lambda s: (order[s.attempt_id], s.id or 0))
