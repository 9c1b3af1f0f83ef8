"""The data each page renders. A page and its live JSON twin build it the same way."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from orchestrator.models import User
from orchestrator.models.types import utcnow
from orchestrator.runtime import Runtime
from orchestrator.services import fleet, usage
from orchestrator.web import details, overview

# Template fragments that the live view swaps in, per page.
OVERVIEW_SECTIONS = ("queue", "running", "workers", "usage", "utilization", "events")
EXPERIMENT_SECTIONS = ("summary", "attempts", "checkpoints", "metrics")
WORKER_SECTIONS = ("details", "attempts")


def overview_data(session: Session, runtime: Runtime, user: User) -> dict[str, Any]:
    fleet_now = overview.Fleet.load(session, utcnow())
    jobs = overview.running(session, user)
    week = usage.report(session, runtime.settings)
    return {
        "queue": overview.queue_depths(session, user),
        "running": [r for r in jobs if r.visible],
        "workers": overview.worker_rows(fleet_now, jobs, week, runtime.settings),
        "week": week,
        "usage": overview.usage_bars(week),
        "utilization": fleet_now.utilization_chart(),
        "events": overview.recent_events(session, user),
    }


def experiment_data(
    session: Session,
    runtime: Runtime,
    user: User,
    experiment_id: int,
    *,
    log_attempt: int | None = None,
    log_offset: int = 0,
) -> dict[str, Any]:
    view = details.experiment_view(session, user=user, experiment_id=experiment_id)
    log = details.log_view(
        runtime.engine,
        user=user,
        experiment_id=experiment_id,
        attempt=log_attempt,
        offset=log_offset,
    )
    return {"view": view, "log": log}


def worker_data(session: Session, runtime: Runtime, user: User, worker_id: int) -> dict[str, Any]:
    worker = fleet.get_worker(session, worker_id)
    job = next(
        (r for r in overview.running(session, user) if r.attempt.worker_id == worker_id), None
    )
    week = usage.report(session, runtime.settings)
    row = overview.worker_row(utcnow(), worker, job, week, runtime.settings)
    return {"row": row, "view": details.worker_view(session, user=user, worker=worker)}
