"""Planning each task against the clock: the per-task budget and the session deadline.

A task interrupted mid-training restarts from scratch on resume (the checkpoint keeps no
training state), so a task that cannot end before the agent asks the job to stop is not
started at all: the job checkpoints and waits for the stop, and the next session does the
task whole. Estimates come from the tasks this process has finished (the GPU and the model
are the same for all of them); before the first one there is nothing to go on and the task
starts, with its training still bounded by the deadline as it runs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from ml.arc.configs import LimitSettings
from ml.arc.solve import LEVELS, NONE, TaskPlan


@dataclass
class TaskClock:
    """Seconds measured on this process's finished tasks."""

    train_seconds: float = 0.0
    train_steps: int = 0
    predict_seconds: float = 0.0
    tasks: int = 0
    task_seconds: float = 0.0

    def record(self, stats: dict[str, Any]) -> None:
        if "seconds" not in stats:
            return  # every level ran out of memory: nothing representative was timed
        train = float(stats.get("train_seconds", 0.0))
        self.train_seconds += train
        self.train_steps += int(stats.get("steps", 0))
        self.predict_seconds += float(stats["seconds"]) - train
        self.task_seconds += float(stats["seconds"])
        self.tasks += 1

    @property
    def step_seconds(self) -> float | None:
        return self.train_seconds / self.train_steps if self.train_steps else None

    @property
    def mean_predict_seconds(self) -> float | None:
        return self.predict_seconds / self.tasks if self.tasks else None

    @property
    def mean_task_seconds(self) -> float | None:
        return self.task_seconds / self.tasks if self.tasks else None


def plan_task(
    limits: LimitSettings,
    clock: TaskClock,
    *,
    seconds_left: float | None,
    now: float | None = None,
) -> TaskPlan | None:
    """The plan of the next task (its level 0, or no TTT when there is only time to
    predict), or None when the task should wait for the next session.

    ``seconds_left`` is the time to the session deadline (``ctx.seconds_left()``, None when
    unknown); ``now`` is ``time.monotonic()``, the clock of ``TaskPlan.train_until``.
    """
    now = time.monotonic() if now is None else now
    budget = math.inf if limits.task_seconds is None else limits.task_seconds
    if seconds_left is not None:
        session = seconds_left - limits.deadline_reserve_seconds
        expected = clock.mean_task_seconds
        if session <= 0 or (expected is not None and min(expected, budget) > session):
            return None
        budget = min(budget, session)
    if math.isinf(budget):
        return TaskPlan()
    train_budget = budget - (clock.mean_predict_seconds or 0.0)
    step = clock.step_seconds
    if train_budget <= 0 or (step is not None and train_budget < step):
        return TaskPlan(level=LEVELS.index(NONE))  # time to predict, not to train
    max_steps = None if step is None else math.floor(train_budget / step)
    return TaskPlan(max_steps=max_steps, train_until=now + train_budget)
