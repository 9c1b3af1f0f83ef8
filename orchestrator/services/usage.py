"""GPU time per worker, platform account and ISO week.

Busy time (running jobs) is summed from lease reports; connected time is a worker's span from
registration to its last sign of life (claims and heartbeats). Both are weighted by the
worker's GPU count, so "GPU hours"; utilization = busy ÷ connected.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import and_, or_
from sqlmodel import Session, col, select

from orchestrator.models import Attempt, GpuUsage, PlatformQuota, Worker
from orchestrator.models.types import utcnow
from orchestrator.settings import Settings

HOUR = 3600.0


def iso_week(moment: datetime) -> str:
    year, week, _ = moment.astimezone(UTC).isocalendar()
    return f"{year}-W{week:02d}"


def week_bounds(week: str) -> tuple[datetime, datetime]:
    """[Monday 00:00 UTC, next Monday) of ``2026-W48``; ValueError for anything else."""
    year, _, number = week.partition("-W")
    start = datetime.fromisocalendar(int(year), int(number), 1).replace(tzinfo=UTC)
    return start, start + timedelta(days=7)


def split_by_week(start: datetime, end: datetime) -> Iterator[tuple[str, float]]:
    """(week, seconds) pieces of [start, end)."""
    while start < end:
        _, week_end = week_bounds(iso_week(start))
        stop = min(end, week_end)
        yield iso_week(start), (stop - start).total_seconds()
        start = stop


def record_busy(session: Session, *, attempt: Attempt) -> None:
    """Credit the time since the attempt's previous report to its worker.

    Called on every report of a current lease (heartbeat, complete, fail, release), just
    before ``heartbeat_at`` moves: the job ran all along, even through a control-plane
    outage, since the lease is still ours.
    """
    if attempt.worker_id is None:
        return
    now = utcnow()
    for week, seconds in split_by_week(attempt.heartbeat_at, now):
        row = session.exec(
            select(GpuUsage).where(GpuUsage.worker_id == attempt.worker_id, GpuUsage.week == week)
        ).one_or_none()
        row = row or GpuUsage(worker_id=attempt.worker_id, week=week)
        row.busy_seconds += seconds
        row.updated_at = now
        session.add(row)


class WorkerUsage(BaseModel):
    worker_id: int
    name: str
    platform: str
    account: str
    gpu_count: int
    connected_hours: float
    busy_hours: float
    utilization: float | None
    last_seen_at: datetime
    session_deadline: datetime | None


class PlatformUsage(BaseModel):
    platform: str
    account: str
    source: str  # "kaggle": the platform's own figures; "baton": what workers reported
    gpu_hours_used: float | None  # what the platform bills: connected GPU time
    gpu_hours_allowed: float | None
    resets_at: datetime | None
    busy_gpu_hours: float
    connected_gpu_hours: float
    utilization: float | None
    quota_error: str | None = None


class Totals(BaseModel):
    busy_gpu_hours: float
    connected_gpu_hours: float
    utilization: float | None


class UsageReport(BaseModel):
    week: str
    week_start: datetime
    week_end: datetime
    platforms: list[PlatformUsage]
    workers: list[WorkerUsage]
    overall: Totals


def _ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 6) if whole > 0 else None


def _connected_seconds(worker: Worker, start: datetime, end: datetime) -> float:
    span_end = min(worker.last_seen_at, end)
    span_start = max(worker.registered_at, start)
    return max(0.0, (span_end - span_start).total_seconds())


def _workers(session: Session, week: str, start: datetime, end: datetime) -> list[WorkerUsage]:
    busy = {
        row.worker_id: row.busy_seconds
        for row in session.exec(select(GpuUsage).where(GpuUsage.week == week))
    }
    connected_this_week = and_(col(Worker.registered_at) < end, col(Worker.last_seen_at) >= start)
    rows = session.exec(
        select(Worker)
        .where(or_(connected_this_week, col(Worker.id).in_(list(busy))))
        .order_by(col(Worker.id))
    ).all()
    result = []
    for w in rows:
        assert w.id is not None
        connected = _connected_seconds(w, start, end)
        # Reports can land a moment after the last claim: never show more busy than connected.
        busy_s = min(busy.get(w.id, 0.0), connected) if connected else busy.get(w.id, 0.0)
        connected = max(connected, busy_s)
        result.append(
            WorkerUsage(
                worker_id=w.id,
                name=w.name,
                platform=str(w.platform),
                account=w.account,
                gpu_count=w.gpu_count,
                connected_hours=round(connected / HOUR, 6),
                busy_hours=round(busy_s / HOUR, 6),
                utilization=_ratio(busy_s, connected),
                last_seen_at=w.last_seen_at,
                session_deadline=w.session_deadline,
            )
        )
    return result


def _gpu_hours(worker: WorkerUsage, hours: float) -> float:
    return hours * worker.gpu_count


def report(session: Session, settings: Settings, *, week: str | None = None) -> UsageReport:
    week = week or iso_week(utcnow())
    start, end = week_bounds(week)
    workers = _workers(session, week, start, end)
    groups: dict[tuple[str, str], list[WorkerUsage]] = defaultdict(list)
    for w in workers:
        groups[(w.platform, w.account)].append(w)
    quotas = {(q.platform, q.account): q for q in session.exec(select(PlatformQuota))}
    keys = sorted(set(groups) | set(quotas))
    platforms = [
        _platform_usage(key, groups.get(key, []), quotas.get(key), settings, end) for key in keys
    ]
    busy = sum(_gpu_hours(w, w.busy_hours) for w in workers)
    connected = sum(_gpu_hours(w, w.connected_hours) for w in workers)
    return UsageReport(
        week=week,
        week_start=start,
        week_end=end,
        platforms=platforms,
        workers=workers,
        overall=Totals(
            busy_gpu_hours=round(busy, 6),
            connected_gpu_hours=round(connected, 6),
            utilization=_ratio(busy, connected),
        ),
    )


def _platform_usage(
    key: tuple[str, str],
    workers: list[WorkerUsage],
    quota: PlatformQuota | None,
    settings: Settings,
    week_end: datetime,
) -> PlatformUsage:
    platform, account = key
    busy = sum(_gpu_hours(w, w.busy_hours) for w in workers)
    connected = sum(_gpu_hours(w, w.connected_hours) for w in workers)
    allowed = settings.platform_gpu_hours.get(platform)
    usage = PlatformUsage(
        platform=platform,
        account=account,
        source="baton",
        gpu_hours_used=round(connected, 6),
        gpu_hours_allowed=allowed,
        resets_at=week_end if allowed is not None else None,
        busy_gpu_hours=round(busy, 6),
        connected_gpu_hours=round(connected, 6),
        utilization=_ratio(busy, connected),
    )
    if quota is not None:
        usage.quota_error = quota.error
        if quota.used_seconds is not None and quota.allowed_seconds is not None:
            usage.source = platform
            usage.gpu_hours_used = round(quota.used_seconds / HOUR, 6)
            usage.gpu_hours_allowed = round(quota.allowed_seconds / HOUR, 6)
            usage.resets_at = quota.resets_at
    return usage
