"""What the overview page shows, read from the database.

Fleet panels (workers, GPU hours, utilization) are the same for everyone; experiment panels
(queue, running, events) hold only the viewer's own experiments unless they are an admin.
GPU hours and per-worker utilization for the week come from ``services.usage``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, or_, select

from orchestrator.dispatch import Requirement
from orchestrator.dispatch.capability import capability_class
from orchestrator.models import Attempt, AttemptOutcome, Experiment, ExperimentStatus, User, Worker
from orchestrator.services.usage import PlatformUsage, UsageReport
from orchestrator.settings import Settings
from orchestrator.web import charts
from orchestrator.web.stats import Progress, busy_seconds, busy_span, hour_buckets, progress_of

FLEET_WINDOW = timedelta(hours=24)
EVENT_OUTCOMES = (AttemptOutcome.lost, AttemptOutcome.preempted, AttemptOutcome.failed)
MAX_EVENTS = 15
MAX_WORKER_ROWS = 50


@dataclass(frozen=True)
class QueueRow:
    capability_class: str
    total: int
    by_priority: list[tuple[int, int]]  # (priority, count), highest priority first


@dataclass(frozen=True)
class Running:
    experiment: Experiment
    attempt: Attempt
    progress: Progress
    visible: bool  # the viewer may open it


@dataclass(frozen=True)
class WorkerRow:
    worker: Worker
    online: bool
    seen_seconds_ago: float
    session_left_seconds: float | None
    utilization: float | None  # busy share of its connected GPU time this week
    job: Running | None


@dataclass(frozen=True)
class UsageBar:
    usage: PlatformUsage
    fill_percent: float  # of the quota, or of the busiest platform when none is known


@dataclass(frozen=True)
class Event:
    experiment: Experiment
    attempt: Attempt


def can_see(user: User, experiment: Experiment) -> bool:
    return user.is_admin or experiment.owner_id == user.id


def _scoped(query: Any, user: User) -> Any:
    return query if user.is_admin else query.where(Experiment.owner_id == user.id)


def queue_depths(session: Session, user: User) -> list[QueueRow]:
    query = select(Experiment.resources, Experiment.priority).where(
        Experiment.status == ExperimentStatus.queued
    )
    counts: Counter[tuple[str, int]] = Counter()
    for resources, priority in session.exec(_scoped(query, user)):
        counts[(capability_class(Requirement.from_resources(resources)), priority)] += 1
    by_class: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for (name, priority), count in counts.items():
        by_class[name].append((priority, count))
    return [
        QueueRow(name, sum(c for _, c in rows), sorted(rows, reverse=True))
        for name, rows in sorted(by_class.items())
    ]


def running(session: Session, user: User) -> list[Running]:
    """Open attempts, newest first; ``visible`` says whether the viewer may see the job."""
    rows = session.exec(
        select(Attempt, Experiment)
        .join(Experiment, col(Attempt.experiment_id) == col(Experiment.id))
        .where(col(Attempt.ended_at).is_(None))
        .order_by(col(Attempt.started_at).desc())
    ).all()
    return [Running(e, a, progress_of(a), can_see(user, e)) for a, e in rows]


def recent_events(session: Session, user: User) -> list[Event]:
    query = (
        select(Attempt, Experiment)
        .join(Experiment, col(Attempt.experiment_id) == col(Experiment.id))
        .where(col(Attempt.outcome).in_(EVENT_OUTCOMES))
        .order_by(col(Attempt.ended_at).desc())
        .limit(MAX_EVENTS)
    )
    return [Event(e, a) for a, e in session.exec(_scoped(query, user)).all()]


@dataclass(frozen=True)
class Fleet:
    """Workers seen in the fleet window, and the attempts that overlap it."""

    now: datetime
    workers: list[Worker]
    attempts: list[Attempt]

    @classmethod
    def load(cls, session: Session, now: datetime) -> Fleet:
        since = now - FLEET_WINDOW
        workers = session.exec(
            select(Worker)
            .where(col(Worker.last_seen_at) >= since)
            .order_by(col(Worker.last_seen_at).desc())
        ).all()
        attempts = session.exec(
            select(Attempt).where(
                col(Attempt.worker_id).is_not(None),
                or_(col(Attempt.ended_at).is_(None), col(Attempt.ended_at) >= since),
            )
        ).all()
        return cls(now=now, workers=list(workers), attempts=list(attempts))

    def utilization_chart(self, hours: int = 24) -> charts.BarChart:
        """Per hour: average workers connected, and how many of them ran a job."""
        spans = [busy_span(a) for a in self.attempts]
        connected = [(w.registered_at, min(w.last_seen_at, self.now)) for w in self.workers]
        bars = []
        for start, end in hour_buckets(self.now, hours):
            length = max((end - start).total_seconds(), 1.0)
            total = busy_seconds(connected, start, end) / length
            # A report can land just after the last claim moved last_seen: never over 100%.
            part = min(busy_seconds(spans, start, end) / length, total)
            bars.append(charts.Bar(label=start.strftime("%H:00"), total=total, part=part))
        return charts.bar_chart(bars)


def worker_row(
    now: datetime, worker: Worker, job: Running | None, week: UsageReport, settings: Settings
) -> WorkerRow:
    seen = (now - worker.last_seen_at).total_seconds()
    deadline = worker.session_deadline
    usage = next((w for w in week.workers if w.worker_id == worker.id), None)
    return WorkerRow(
        worker=worker,
        # Idle workers long-poll and busy ones heartbeat, both well within a lease.
        online=seen <= settings.lease_seconds,
        seen_seconds_ago=max(0.0, seen),
        session_left_seconds=(deadline - now).total_seconds() if deadline else None,
        utilization=usage.utilization if usage else None,
        job=job,
    )


def worker_rows(
    fleet: Fleet, jobs: list[Running], week: UsageReport, settings: Settings
) -> list[WorkerRow]:
    by_worker = {r.attempt.worker_id: r for r in jobs}
    return [
        worker_row(fleet.now, w, by_worker.get(w.id), week, settings)
        for w in fleet.workers[:MAX_WORKER_ROWS]
    ]


def usage_bars(week: UsageReport) -> list[UsageBar]:
    """GPU hours used per platform account against its quota (when one is known)."""
    used = [p.gpu_hours_used or 0.0 for p in week.platforms]
    busiest = max(used, default=0.0) or 1.0
    return [
        UsageBar(p, min(100.0, 100 * hours / (p.gpu_hours_allowed or busiest)))
        for p, hours in zip(week.platforms, used, strict=True)
    ]
