"""What the experiment and worker pages show, read from the database."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from orchestrator.models import Attempt, Experiment, ExperimentStatus, User, Worker, WorkerToken
from orchestrator.services import experiments, logs, metric_history
from orchestrator.services.logs import LogRead
from orchestrator.web import charts
from orchestrator.web.overview import Running, can_see
from orchestrator.web.stats import busy_span, progress_of

MAX_METRIC_CHARTS = 6
# How much output a page shows when it first opens (the live view appends from there).
LOG_WINDOW_BYTES = 16 * 1024
WORKER_ATTEMPTS = 20


@dataclass(frozen=True)
class Segment:
    """One attempt on the experiment's timeline, in percent of the whole span."""

    attempt: Attempt
    left: float
    width: float


def timeline(attempts: list[Attempt]) -> list[Segment]:
    if not attempts:
        return []
    spans = [busy_span(a) for a in attempts]
    start = min(s for s, _ in spans)
    whole = max((max(e for _, e in spans) - start).total_seconds(), 1.0)
    return [
        Segment(
            attempt=a,
            left=100 * (s - start).total_seconds() / whole,
            # Keep a zero-length attempt visible as a sliver.
            width=max(0.5, 100 * (e - s).total_seconds() / whole),
        )
        for a, (s, e) in zip(attempts, spans, strict=True)
    ]


def metric_charts(session: Session, attempts: list[Attempt]) -> list[charts.LineChart]:
    """One chart per metric, one line per attempt; x is the step (time when steps are absent)."""
    numbers = {a.id: a.number for a in attempts if a.id is not None}
    samples = metric_history.samples_of(session, list(numbers))
    if not samples:
        return []
    origin = samples[0].recorded_at
    series: dict[str, dict[int, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for sample in samples:
        x = (
            sample.step
            if sample.step is not None
            else (sample.recorded_at - origin).total_seconds()
        )
        for key, value in sample.values.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                series[key][numbers[sample.attempt_id]].append((float(x), float(value)))
    return [
        charts.line_chart(key, [(f"attempt {n}", pts) for n, pts in sorted(by_attempt.items())])
        for key, by_attempt in sorted(series.items())[:MAX_METRIC_CHARTS]
    ]


@dataclass(frozen=True)
class LogView:
    attempt: int | None
    text: str
    next_offset: int
    reset: bool  # the text starts a new view (another attempt, or the first look)
    eof: bool


def log_view(
    engine: Engine, *, user: User, experiment_id: int, attempt: int | None, offset: int
) -> LogView:
    """New output of the latest attempt after ``offset`` of ``attempt``; when the latest attempt
    is another one (or none was given), its last ``LOG_WINDOW_BYTES`` instead."""
    read = logs.read(engine, user=user, experiment_id=experiment_id, attempt=None, offset=offset)
    reset = attempt is None or read.attempt != attempt
    if reset:
        read = logs.read(
            engine,
            user=user,
            experiment_id=experiment_id,
            attempt=None,
            offset=max(0, read.total_bytes - LOG_WINDOW_BYTES),
        )
    return _view(read, reset=reset)


def _view(read: LogRead, *, reset: bool) -> LogView:
    return LogView(
        attempt=read.attempt,
        text=read.text,
        next_offset=read.next_offset,
        reset=reset,
        eof=read.eof,
    )


@dataclass(frozen=True)
class AttemptRow:
    attempt: Attempt
    worker: Worker | None


@dataclass(frozen=True)
class ExperimentView:
    experiment: Experiment
    owner: User | None
    tags: list[str]
    attempts: list[AttemptRow]
    running: Running | None
    timeline: list[Segment]
    charts: list[charts.LineChart]

    @property
    def can_cancel(self) -> bool:
        return not self.experiment.status.is_final

    @property
    def can_retry(self) -> bool:
        status = self.experiment.status
        return status.is_final and status != ExperimentStatus.succeeded


def experiment_view(session: Session, *, user: User, experiment_id: int) -> ExperimentView:
    experiment = experiments.get_visible(session, user=user, experiment_id=experiment_id)
    attempts = list(
        session.exec(
            select(Attempt)
            .where(Attempt.experiment_id == experiment_id)
            .order_by(col(Attempt.number))
        ).all()
    )
    worker_ids = {a.worker_id for a in attempts if a.worker_id is not None}
    workers = {
        w.id: w for w in session.exec(select(Worker).where(col(Worker.id).in_(worker_ids))).all()
    }
    open_attempt = next((a for a in attempts if a.ended_at is None), None)
    return ExperimentView(
        experiment=experiment,
        owner=session.get(User, experiment.owner_id),
        tags=experiments.tags_of(session, [experiment_id])[experiment_id],
        attempts=[AttemptRow(a, workers.get(a.worker_id)) for a in attempts],
        running=Running(experiment, open_attempt, progress_of(open_attempt), True)
        if open_attempt
        else None,
        timeline=timeline(attempts),
        charts=metric_charts(session, attempts),
    )


@dataclass(frozen=True)
class WorkerAttempt:
    attempt: Attempt
    experiment: Experiment
    visible: bool


@dataclass(frozen=True)
class WorkerView:
    worker: Worker
    token: WorkerToken | None
    token_workers: int  # how many workers registered with the same token
    attempts: list[WorkerAttempt]


def worker_view(session: Session, *, user: User, worker: Worker) -> WorkerView:
    rows = session.exec(
        select(Attempt, Experiment)
        .join(Experiment, col(Attempt.experiment_id) == col(Experiment.id))
        .where(Attempt.worker_id == worker.id)
        .order_by(col(Attempt.started_at).desc())
        .limit(WORKER_ATTEMPTS)
    ).all()
    siblings = session.exec(select(Worker.id).where(Worker.token_id == worker.token_id)).all()
    return WorkerView(
        worker=worker,
        token=session.get(WorkerToken, worker.token_id),
        token_workers=len(siblings),
        attempts=[WorkerAttempt(a, e, can_see(user, e)) for a, e in rows],
    )
