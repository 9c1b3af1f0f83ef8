"""The free-tier bench's pure parts: scenario files, the seeded session schedule, and the
measures taken from a ledger of job events (bench/freetier)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from bench.freetier.drive import Lived, ModeRun
from bench.freetier.measure import max_overlap, measure, runs
from bench.freetier.report import read_raw, write_json
from bench.freetier.scenario import ScenarioError, Session, load, next_check, schedule

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "freetier"


@pytest.mark.parametrize("name", ["day.yaml", "week.yaml"])
def test_shipped_scenarios_load(name: str) -> None:
    scenario = load(CONFIGS / name)
    assert scenario.hours in (24, 168) and scenario.jobs and scenario.accounts


def test_the_schedule_is_deterministic_for_a_seed_and_keeps_quotas() -> None:
    scenario = load(CONFIGS / "week.yaml")
    first = schedule(scenario, 3, by_hand=False)
    assert first == schedule(scenario, 3, by_hand=False)
    assert first != schedule(scenario, 4, by_hand=False)
    for account in scenario.accounts:
        mine = [s for s in first if s.account == account.name]
        assert all(a.end <= b.start for a, b in itertools.pairwise(mine)), account.name
        if account.quota_hours is not None:
            assert sum(s.hours for s in mine) <= account.quota_hours + 1e-9
        if account.end == "deadline":
            assert all(s.hours <= account.session_hours + 1e-9 for s in mine)
    spot = [s for s in first if s.how == "spot"]
    assert spot and all(s.notice is not None and s.notice < s.end for s in spot)


def test_a_person_relaunches_at_the_next_check_and_rotation_at_once() -> None:
    scenario = load(CONFIGS / "day.yaml")  # checks at 9, 13, 18, 22; hour 0 is 08:00
    assert next_check(scenario, 0.0) == 1.0
    assert next_check(scenario, 14.5) == 25.0  # 22:30 -> 09:00 the next day
    rotated = [s for s in schedule(scenario, 7, by_hand=False) if s.account == "kaggle"]
    by_hand = [s for s in schedule(scenario, 7, by_hand=True) if s.account == "kaggle"]
    assert rotated[1].start == pytest.approx(rotated[0].end + 10 / 60)
    assert by_hand[1].start == next_check(scenario, by_hand[0].end)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("hours: 24\nhour_seconds: 1\n", "needs at least one job"),
        (
            "hours: 200\nhour_seconds: 1\njobs: [{name: a, steps: 1, steps_per_hour: 1}]\n"
            "accounts: [{name: k, end: deadline, relaunch: person}]\n",
            "at most a week",
        ),
        (
            "hours: 24\nhour_seconds: 1\njobs: [{name: a, steps: 1, steps_per_hour: 1}]\n"
            "accounts: [{name: k, end: crash, relaunch: person}]\n",
            "accounts[0].end",
        ),
        ("hours: -1\n", "scenario.hours"),
    ],
)
def test_bad_scenarios_name_the_field(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        load(path)


def _ledger() -> list[dict[str, object]]:
    """short-1 on kaggle to step 50 (checkpoint 40), resumed on colab from 40 to the end."""
    events: list[dict[str, object]] = [
        {
            "t": 0.0,
            "e": "start",
            "job": "short-1",
            "host": "baton-nb-1-kaggle",
            "resumed": 0,
            "run": "a",
        },
        {"t": 0.1, "e": "ready", "run": "a"},
        *({"t": 0.1 + n * 0.01, "e": "step", "n": n, "run": "a"} for n in range(1, 51)),
        {"t": 0.5, "e": "checkpoint", "n": 40, "run": "a"},
        {
            "t": 2.0,
            "e": "start",
            "job": "short-1",
            "host": "baton-nb-1-colab",
            "resumed": 40,
            "run": "b",
        },
        {"t": 2.5, "e": "ready", "run": "b"},
        *({"t": 2.5 + n * 0.01, "e": "step", "n": 40 + n, "run": "b"} for n in range(1, 201)),
        {"t": 4.6, "e": "done", "n": 240, "run": "b"},
    ]
    return events


def test_steps_lost_are_those_past_the_resume_point() -> None:
    jobs = runs(_ledger(), ["kaggle", "colab"])
    first, second = jobs["short-1"]
    assert (first.account, first.lost, second.account, second.lost) == ("kaggle", 10, "colab", 0)
    assert max_overlap(jobs["short-1"], gap=1.0) == 0


def test_measures_yield_loss_and_recovery() -> None:
    scenario = load(CONFIGS / "day.yaml")  # short: 100 steps/h; 1 platform h = 4 s
    sessions = [
        Lived(Session("kaggle", 0, 0, 1, "disconnect"), started=0.0, ended=1.0),
        Lived(Session("colab", 0, 0, 2, "over"), started=1.0, ended=5.0),
    ]
    run = ModeRun("by_hand", t0=0.0, ended=5.0, sessions=sessions, ledger=_ledger())
    m = measure(scenario, run)
    assert m.lost_by_end == {"disconnect": 10, "over": 0}
    assert m.overall["connected_hours"] == pytest.approx(5 / 4)
    kept = 240 / 100  # GPU-hours of steps kept
    assert m.overall["yield"] == pytest.approx(kept / (5 / 4))
    assert m.recoveries_hours == [pytest.approx((2.5 - 0.6) / 4)]
    assert m.finished_once and m.jobs_finished == 1


def test_a_runs_raw_record_measures_the_same_from_json(tmp_path: Path) -> None:
    scenario = load(CONFIGS / "day.yaml")
    sessions = [Lived(Session("colab", 0, 0, 2, "disconnect"), started=1.0, ended=5.0)]
    run = ModeRun("baton", t0=0.0, ended=5.0, sessions=sessions, ledger=_ledger())
    before = measure(scenario, run)
    path = tmp_path / "week.json"
    write_json(path, scenario, 3, [before], {"baton": 9.0}, {"baton": run})
    seed, walls, raw = read_raw(path)
    assert (seed, walls, raw["baton"]) == (3, {"baton": 9.0}, run)
    assert measure(scenario, raw["baton"]).overall == before.overall
