"""A compressed free-tier day on the real topology (bench/freetier): Baton as shipped keeps
every step at the session ends it can know, runs each job to the end once, never runs one job
twice for longer than a lease, and stays inside each platform's quota."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.freetier.drive import run_mode
from bench.freetier.measure import measure
from bench.freetier.scenario import load
from tests.support.install import build_wheel, control_plane_venv
from tests.support.notebooks import (
    BARE_PLATFORM,
    notebook_wheelhouse,
    platform_site,
    wheelhouse,
)
from tests.topology.conftest import MARKS, REPO

# About 2.5 min once the control plane's venv is cached (building it adds about a minute).
pytestmark = [*MARKS[:-2], pytest.mark.timeout(360), MARKS[-1]]


def test_a_free_tier_day_keeps_every_step_it_can(tmp_path: Path) -> None:
    scenario = load(REPO / "configs" / "freetier" / "day.yaml")
    wheels = wheelhouse([*BARE_PLATFORM])
    run = run_mode(
        scenario,
        7,
        "baton",
        cp_venv=control_plane_venv(build_wheel(REPO, tmp_path / "wheel")),
        platform=platform_site(BARE_PLATFORM, wheels),
        wheels=notebook_wheelhouse(wheels),
        logs=tmp_path / "logs",
    )
    m = measure(scenario, run)
    ends = {s.plan.how for s in run.sessions}
    # The day has every kind of end, or the invariants below prove less than they say.
    assert {"deadline", "disconnect", "spot", "sleep"} <= ends, ends
    assert run.finished_all and m.jobs_finished == m.jobs, (m.jobs_finished, m.jobs)
    assert m.finished_once
    assert all(e["status"] == "succeeded" for e in run.experiments)
    # Known ends (a platform's limit, a spot notice): the agent checkpoints first.
    assert m.lost_by_end.get("deadline", 0) == 0, m.lost_by_end
    assert m.lost_by_end.get("spot", 0) == 0, m.lost_by_end
    preempted = [a for e in run.experiments for a in e["attempts"] if a["outcome"] == "preempted"]
    assert preempted, "no attempt was released ahead of a known end"
    lease = scenario.minutes_wall(scenario.baton.lease_minutes)
    assert m.max_overlap_seconds <= lease, m.max_overlap_seconds
    for account in scenario.accounts:
        if account.quota_hours is not None:
            used = m.per_account[account.name]["connected_hours"]
            assert used <= account.quota_hours + 0.05, (account.name, used)
    # Abrupt ends lose the work since the last checkpoint, and no more than that.
    for job_runs in m.runs.values():
        for r in job_runs:
            shape = next(j for j in scenario.jobs if r.job.startswith(f"{j.name}-"))
            between = shape.steps_per_hour * shape.checkpoint_every_minutes / 60
            assert r.lost <= between + 2, (r.job, r.account, r.cause, r.lost)
