"""Arithmetic over attempts: progress estimates, busy spans, time in windows."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from orchestrator.models import Attempt, AttemptOutcome


@dataclass(frozen=True)
class Progress:
    step: int | None
    total: int | None
    steps_per_second: float | None
    eta_seconds: float | None

    @property
    def percent(self) -> float | None:
        if self.step is None or not self.total:
            return None
        return max(0.0, min(100.0, 100.0 * self.step / self.total))


def progress_of(attempt: Attempt) -> Progress:
    """Step rate over this attempt so far (from where it resumed), and the ETA it implies."""
    step, total = attempt.progress_step, attempt.progress_total
    rate = eta = None
    if step is not None:
        done = step - (attempt.resumed_from_step or 0)
        elapsed = (attempt.heartbeat_at - attempt.started_at).total_seconds()
        if done > 0 and elapsed > 0:
            rate = done / elapsed
            if total is not None and total >= step:
                eta = (total - step) / rate
    return Progress(step=step, total=total, steps_per_second=rate, eta_seconds=eta)


def busy_span(attempt: Attempt) -> tuple[datetime, datetime]:
    """When the attempt is known to have held its worker: until it ended, or until its last
    heartbeat while it runs (or when it was lost, rather than when the reaper noticed)."""
    ended = attempt.ended_at is not None and attempt.outcome != AttemptOutcome.lost
    end = attempt.ended_at if ended and attempt.ended_at else attempt.heartbeat_at
    return attempt.started_at, max(attempt.started_at, end)


def overlap_seconds(
    start: datetime, end: datetime, window_start: datetime, window_end: datetime
) -> float:
    return max(0.0, (min(end, window_end) - max(start, window_start)).total_seconds())


def hour_buckets(now: datetime, hours: int) -> list[tuple[datetime, datetime]]:
    """The last ``hours`` whole clock hours plus the current partial one, oldest first."""
    top = now.replace(minute=0, second=0, microsecond=0)
    starts = [top - timedelta(hours=h) for h in range(hours - 1, -1, -1)]
    return [(s, min(s + timedelta(hours=1), now)) for s in starts]


def busy_seconds(
    spans: Iterable[tuple[datetime, datetime]], window_start: datetime, window_end: datetime
) -> float:
    return sum(overlap_seconds(s, e, window_start, window_end) for s, e in spans)
