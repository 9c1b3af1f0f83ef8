"""What a mode's run amounts to, from its ledger (every job process's own events) and its
sessions as they happened. Pure logic over recorded data; times come out in platform hours.

- yield: work kept (steps kept ÷ the job's steps per hour, in GPU-hours) ÷ GPU-hours connected
- steps lost: steps a process made past the point the job went on from (the next run's resume
  step; for a job still unfinished, its newest checkpoint), by how the session ended
- idle: connected time no job process was alive in
- recovery: from a run's last event to the job's next run being ready (past its start-up)
- overlap: the longest time two runs of one job both made steps (gaps over a lease split a run)
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from bench.freetier.drive import ModeRun, queue
from bench.freetier.scenario import Scenario


@dataclass
class Run:
    """One job process: where it ran, from which step, how far, and what it saved."""

    job: str
    account: str
    started: float
    resumed: int
    ready: float | None = None
    steps: list[tuple[float, int]] = field(default_factory=list)
    checkpoints: list[int] = field(default_factory=list)
    done: bool = False
    lost: int = 0
    cause: str = ""  # how the session it ran in ended

    @property
    def last(self) -> float:
        return self.steps[-1][0] if self.steps else (self.ready or self.started)

    @property
    def reached(self) -> int:
        return self.steps[-1][1] if self.steps else self.resumed


def runs(events: list[dict[str, Any]], accounts: list[str]) -> dict[str, list[Run]]:
    by_run: dict[str, Run] = {}
    for event in sorted(events, key=lambda e: e["t"]):
        if event["e"] == "start":
            host = str(event["host"])
            account = next((a for a in accounts if host.endswith(f"-{a}")), host)
            by_run[event["run"]] = Run(event["job"], account, event["t"], int(event["resumed"]))
            continue
        run = by_run.get(event["run"])
        if run is None:
            continue
        if event["e"] == "ready":
            run.ready = event["t"]
        elif event["e"] == "step":
            run.steps.append((event["t"], int(event["n"])))
        elif event["e"] == "checkpoint":
            run.checkpoints.append(int(event["n"]))
        elif event["e"] == "done":
            run.done = True
    jobs: dict[str, list[Run]] = defaultdict(list)
    for run in sorted(by_run.values(), key=lambda r: r.started):
        jobs[run.job].append(run)
    for job_runs in jobs.values():
        for run, after in zip(job_runs, [*job_runs[1:], None], strict=True):
            if run.done:
                continue
            kept = after.resumed if after is not None else max(run.checkpoints, default=0)
            run.lost = max(0, run.reached - max(kept, run.resumed))
    return jobs


def live_spans(run: Run, gap: float) -> list[tuple[float, float]]:
    """When the run made steps; a silence over ``gap`` (a sleep, a stop) splits it."""
    spans: list[tuple[float, float]] = []
    for t, _ in run.steps:
        if spans and t - spans[-1][1] <= gap:
            spans[-1] = (spans[-1][0], t)
        else:
            spans.append((t, t))
    return spans


def max_overlap(job_runs: list[Run], gap: float) -> float:
    worst = 0.0
    spans = [(i, s) for i, run in enumerate(job_runs) for s in live_spans(run, gap)]
    for i, (a0, a1) in spans:
        for j, (b0, b1) in spans:
            if i < j:
                worst = max(worst, min(a1, b1) - max(a0, b0))
    return worst


def idle_parts(start: float, end: float, mine: list[Run]) -> tuple[float, float, float]:
    """A session's time without a job process, in three parts (wall seconds): before its
    first job (the agent's or person's start, a claim), between jobs, after its last job
    (the margin before a known end, a queue run dry, a finished job waiting for a person)."""
    inside = [r for r in mine if r.started < end and r.last > start]
    spans = sorted((max(r.started, start), min(r.last, end)) for r in inside)
    if not spans:
        return end - start, 0.0, 0.0
    between, reach = 0.0, spans[0][1]
    for s0, s1 in spans[1:]:
        between += max(0.0, s0 - reach)
        reach = max(reach, s1)
    return spans[0][0] - start, between, max(0.0, end - reach)


@dataclass
class Measures:
    mode: str
    per_account: dict[str, dict[str, float]]
    overall: dict[str, float]
    lost_by_end: dict[str, int]
    jobs_finished: int
    jobs: int
    finished_once: bool  # each finished job finished in exactly one run
    max_overlap_seconds: float
    recoveries_hours: list[float]
    makespan_hours: float | None
    runs: dict[str, list[Run]]


def measure(scenario: Scenario, run: ModeRun) -> Measures:
    hours = 1 / scenario.hour_seconds  # platform hours per wall second
    names = [a.name for a in scenario.accounts]
    shapes = {job.name: job.shape for job in queue(scenario)}
    jobs = runs(run.ledger, names)
    sessions = {n: [s for s in run.sessions if s.plan.account == n] for n in names}

    def session_end(account: str, t: float) -> str:
        for lived in sessions[account]:
            if lived.started - 1 <= t <= (lived.ended or run.ended) + 1:
                return lived.plan.how
        return "over"  # in flight when the run ended (the sessions' records end before it)

    stats: dict[str, dict[str, float]] = {n: defaultdict(float) for n in names}
    lost_by_end: dict[str, int] = defaultdict(int)
    recoveries: list[float] = []
    lease_wall = scenario.minutes_wall(scenario.baton.lease_minutes)
    for job, job_runs in jobs.items():
        shape = shapes[job]
        for r, after in zip(job_runs, [*job_runs[1:], None], strict=True):
            made = r.reached - r.resumed
            st = stats[r.account]
            st["steps_made"] += made
            st["steps_lost"] += r.lost
            st["work_kept_hours"] += (made - r.lost) / shape.steps_per_hour
            st["work_lost_hours"] += r.lost / shape.steps_per_hour
            st["startup_hours"] += ((r.ready or r.last) - r.started) * hours
            st["checkpoints"] += len(r.checkpoints)
            st["checkpoint_hours"] += len(r.checkpoints) * shape.checkpoint_seconds / 3600
            r.cause = session_end(r.account, r.last)
            lost_by_end[r.cause] += r.lost
            if after is not None and not r.done and after.ready is not None:
                recoveries.append((after.ready - r.last) * hours)
    for name in names:
        st = stats[name]
        mine = [r for rs in jobs.values() for r in rs if r.account == name]
        for lived in sessions[name]:
            boot, between, tail = idle_parts(lived.started, lived.ended or run.ended, mine)
            st["idle_boot_hours"] += boot * hours
            st["idle_between_hours"] += between * hours
            st["idle_tail_hours"] += tail * hours
        connected = sum(((s.ended or run.ended) - s.started) for s in sessions[name]) * hours
        st["connected_hours"] = connected
        # Within sessions only: a sleeping machine's stopped job is not busy at night.
        st["idle_hours"] = st["idle_boot_hours"] + st["idle_between_hours"] + st["idle_tail_hours"]
        st["sessions"] = len([s for s in sessions[name] if not s.plan.wakes])
        quota = next(a.quota_hours for a in scenario.accounts if a.name == name)
        st["quota_hours"] = float("nan") if quota is None else quota
        st["yield"] = st["work_kept_hours"] / connected if connected else float("nan")
    overall: dict[str, float] = defaultdict(float)
    for st in stats.values():
        for key in ("connected_hours", "idle_hours", "work_kept_hours", "steps_made"):
            overall[key] += st[key]
        for key in (
            "steps_lost",
            "work_lost_hours",
            "startup_hours",
            "checkpoint_hours",
            "sessions",
            "idle_boot_hours",
            "idle_between_hours",
            "idle_tail_hours",
        ):
            overall[key] += st[key]
    overall["yield"] = overall["work_kept_hours"] / overall["connected_hours"]
    finished = [job for job, rs in jobs.items() if any(r.done for r in rs)]
    once = all(sum(r.done for r in jobs[job]) == 1 for job in finished)
    if run.mode != "by_hand":
        succeeded = [e for e in run.experiments if e["status"] == "succeeded"]
        once = once and all(
            sum(a["outcome"] == "succeeded" for a in e["attempts"]) == 1 for e in succeeded
        )
    done_times = [r.last for rs in jobs.values() for r in rs if r.done]
    makespan = (max(done_times) - run.t0) * hours if len(finished) == len(shapes) else None
    return Measures(
        mode=run.mode,
        per_account={n: dict(st) for n, st in stats.items()},
        overall=dict(overall),
        lost_by_end=dict(lost_by_end),
        jobs_finished=len(finished),
        jobs=len(shapes),
        finished_once=once,
        max_overlap_seconds=max((max_overlap(rs, lease_wall) for rs in jobs.values()), default=0.0),
        recoveries_hours=recoveries,
        makespan_hours=makespan,
        runs=jobs,
    )
