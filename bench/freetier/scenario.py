"""Scenario files (configs/freetier/*.yaml, format in docs/freetier.md) and the session schedule
they give for a seed: when each platform account's GPU session starts, how it ends, and when it
comes back. Pure logic: the same scenario, seed and relaunch policy give the same schedule.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ENDS = ("deadline", "disconnect", "spot", "sleep")
RELAUNCH = ("rotation", "person")
WEEK_HOURS = 168.0  # the longest scenario: quotas are weekly


class ScenarioError(ValueError):
    """A scenario file that cannot be run, with the field at fault named."""


@dataclass(frozen=True)
class JobShape:
    name: str
    count: int
    steps: int
    steps_per_hour: float
    startup_minutes: float
    checkpoint_every_minutes: float
    checkpoint_seconds: float
    checkpoint_mb: float


@dataclass(frozen=True)
class Account:
    name: str
    platform: str
    end: str  # how its sessions end: deadline | disconnect | spot | sleep
    relaunch: str  # who starts the next session under Baton: rotation | person
    session_hours: float  # the platform's limit, known to the agent (ignored for sleep)
    mean_session_hours: float | None  # random ends (disconnect, spot): exponential mean
    quota_hours: float | None  # GPU hours a week
    rotation_minutes: float
    notice_minutes: float  # spot: the interruption notice comes this long before the end
    awake: tuple[float, float]  # sleep: local hours the machine is awake


@dataclass(frozen=True)
class Baton:
    heartbeat_minutes: float
    lease_minutes: float
    checkpoint_margin_minutes: float
    checkpoint_margin_min_minutes: float
    checkpoint_margin_max_minutes: float
    spot_poll_minutes: float
    claim_wait_minutes: float
    kill_grace_minutes: float


@dataclass(frozen=True)
class Scenario:
    name: str
    hours: float
    hour_seconds: float  # wall seconds per platform hour
    start_hour: float  # local time of day at hour 0
    check_hours: tuple[float, ...]  # when a person looks at the notebooks
    save_every_minutes: float  # hand-run notebooks save this often
    baton: Baton
    jobs: tuple[JobShape, ...]
    accounts: tuple[Account, ...]

    def wall(self, hours: float) -> float:
        return hours * self.hour_seconds

    def minutes_wall(self, minutes: float) -> float:
        return minutes / 60 * self.hour_seconds

    @property
    def scale_text(self) -> str:
        return f"1 platform h = {self.hour_seconds:g} s"


def _number(raw: dict[str, Any], key: str, where: str, default: float | None = None) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ScenarioError(f"{where}.{key}: expected a number >= 0, got {value!r}")
    return float(value)


def _choice(raw: dict[str, Any], key: str, where: str, options: tuple[str, ...]) -> str:
    value = raw.get(key)
    if value not in options:
        raise ScenarioError(f"{where}.{key}: expected one of {', '.join(options)}, got {value!r}")
    return str(value)


def _account(raw: dict[str, Any], index: int) -> Account:
    where = f"accounts[{index}]"
    if not isinstance(raw.get("name"), str):
        raise ScenarioError(f"{where}.name: required")
    end = _choice(raw, "end", where, ENDS)
    mean = raw.get("mean_session_hours")
    if end in ("disconnect", "spot") and mean is None:
        raise ScenarioError(f"{where}.mean_session_hours: required for end: {end}")
    awake = raw.get("awake", [8, 23])
    if not (isinstance(awake, list) and len(awake) == 2 and 0 <= awake[0] < awake[1] <= 24):
        raise ScenarioError(f"{where}.awake: expected [from_hour, to_hour] within 0..24")
    return Account(
        name=raw["name"],
        platform=str(raw.get("platform", "local")),
        end=end,
        relaunch=_choice(raw, "relaunch", where, RELAUNCH) if end != "sleep" else "person",
        session_hours=_number(raw, "session_hours", where, 24.0),
        mean_session_hours=None if mean is None else _number(raw, "mean_session_hours", where),
        quota_hours=None if raw.get("quota_hours") is None else _number(raw, "quota_hours", where),
        rotation_minutes=_number(raw, "rotation_minutes", where, 10.0),
        notice_minutes=_number(raw, "notice_minutes", where, 2.0),
        awake=(float(awake[0]), float(awake[1])),
    )


def _job(raw: dict[str, Any], index: int) -> JobShape:
    where = f"jobs[{index}]"
    if not isinstance(raw.get("name"), str):
        raise ScenarioError(f"{where}.name: required")
    return JobShape(
        name=raw["name"],
        count=int(_number(raw, "count", where, 1)),
        steps=int(_number(raw, "steps", where)),
        steps_per_hour=_number(raw, "steps_per_hour", where),
        startup_minutes=_number(raw, "startup_minutes", where, 0.0),
        checkpoint_every_minutes=_number(raw, "checkpoint_every_minutes", where, 30.0),
        checkpoint_seconds=_number(raw, "checkpoint_seconds", where, 0.0),
        checkpoint_mb=_number(raw, "checkpoint_mb", where, 1.0),
    )


def load(path: Path) -> Scenario:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path}: expected a mapping at the top")
    baton = raw.get("baton") or {}
    person = raw.get("person") or {}
    scenario = Scenario(
        name=path.stem,
        hours=_number(raw, "hours", "scenario"),
        hour_seconds=_number(raw, "hour_seconds", "scenario"),
        start_hour=_number(raw, "start_hour", "scenario", 8.0),
        check_hours=tuple(float(h) for h in person.get("check_hours", [9, 13, 18, 22])),
        save_every_minutes=_number(raw.get("hand_run") or {}, "save_every_minutes", "hand_run", 60),
        baton=Baton(
            heartbeat_minutes=_number(baton, "heartbeat_minutes", "baton", 10.0),
            lease_minutes=_number(baton, "lease_minutes", "baton", 40.0),
            checkpoint_margin_minutes=_number(baton, "checkpoint_margin_minutes", "baton", 30.0),
            checkpoint_margin_min_minutes=_number(
                baton, "checkpoint_margin_min_minutes", "baton", 1.0
            ),
            checkpoint_margin_max_minutes=_number(
                baton, "checkpoint_margin_max_minutes", "baton", 30.0
            ),
            spot_poll_minutes=_number(baton, "spot_poll_minutes", "baton", 1.0),
            claim_wait_minutes=_number(baton, "claim_wait_minutes", "baton", 30.0),
            kill_grace_minutes=_number(baton, "kill_grace_minutes", "baton", 60.0),
        ),
        jobs=tuple(_job(j, i) for i, j in enumerate(raw.get("jobs") or [])),
        accounts=tuple(_account(a, i) for i, a in enumerate(raw.get("accounts") or [])),
    )
    if not scenario.jobs or not scenario.accounts:
        raise ScenarioError(f"{path}: needs at least one job and one account")
    if scenario.hours > WEEK_HOURS:
        raise ScenarioError(f"hours: at most a week ({WEEK_HOURS:g}), quotas are weekly")
    if scenario.baton.lease_minutes <= scenario.baton.heartbeat_minutes:
        raise ScenarioError("baton.lease_minutes: must exceed baton.heartbeat_minutes")
    return scenario


@dataclass(frozen=True)
class Session:
    """One GPU session of an account, in platform hours from the scenario's start."""

    account: str
    index: int
    start: float
    end: float
    how: str  # deadline | disconnect | spot | sleep | over (the scenario ran out)
    notice: float | None = None  # spot: when the notice appears
    known_hours: float | None = None  # the limit the agent is told (deadline kinds)
    wakes: bool = False  # a sleeping machine's next session is the same processes, woken

    @property
    def hours(self) -> float:
        return self.end - self.start


def next_check(scenario: Scenario, hour: float) -> float:
    """The first time at or after ``hour`` that a person looks (local check hours)."""
    day = math.floor((hour + scenario.start_hour) / 24)
    for d in range(day, day + 3):
        for check in sorted(scenario.check_hours):
            at = d * 24 + check - scenario.start_hour
            if at >= hour - 1e-9:
                return at
    raise ScenarioError("person.check_hours: empty")


def _awake_periods(scenario: Scenario, account: Account) -> list[tuple[float, float]]:
    periods = []
    first_day = math.floor(scenario.start_hour / 24) - 1
    for day in range(first_day, first_day + int(scenario.hours / 24) + 3):
        start = day * 24 + account.awake[0] - scenario.start_hour
        end = day * 24 + account.awake[1] - scenario.start_hour
        start, end = max(start, 0.0), min(end, scenario.hours)
        if end > start:
            periods.append((start, end))
    return periods


def schedule(scenario: Scenario, seed: int, *, by_hand: bool) -> list[Session]:
    """Every session of every account. ``by_hand``: a person relaunches everything (no Baton)."""
    sessions: list[Session] = []
    for number, account in enumerate(scenario.accounts):
        rng = random.Random(f"{seed}:{number}:{account.name}")
        if account.end == "sleep":
            periods = _awake_periods(scenario, account)
            for i, (start, end) in enumerate(periods):
                how = "sleep" if end < scenario.hours else "over"
                sessions.append(Session(account.name, i, start, end, how, wakes=i > 0))
            continue
        hour, used, index = 0.0, 0.0, 0
        while hour < scenario.hours:
            # One quota for the whole run: a scenario is at most a week.
            left = math.inf if account.quota_hours is None else account.quota_hours - used
            if left <= 1e-9:
                break
            limit = min(account.session_hours, left)
            length, how = limit, "deadline"
            if account.mean_session_hours is not None:
                drawn = rng.expovariate(1 / account.mean_session_hours)
                if drawn < limit:
                    length, how = drawn, account.end
            end = min(hour + length, scenario.hours)
            if end < hour + length:
                how = "over"
            notice = None
            if how == "spot":
                notice = max(hour, end - account.notice_minutes / 60)
            sessions.append(
                Session(
                    account.name,
                    index,
                    hour,
                    end,
                    how,
                    notice=notice,
                    known_hours=limit if account.end != "spot" else None,
                )
            )
            used += end - hour
            index += 1
            if account.relaunch == "rotation" and not by_hand:
                hour = end + account.rotation_minutes / 60
            else:
                hour = next_check(scenario, end)
    return sorted(sessions, key=lambda s: (s.start, s.account))
