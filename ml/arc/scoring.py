"""ARC Prize scoring, error analysis, submission files and run-to-run regressions.

Rules: two attempts per test output; an output is solved when either attempt matches the
whole grid exactly; score = solved test outputs / all test outputs.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ml.arc.data import ArcTask, Grid, valid_grid

ATTEMPT_KEYS = ("attempt_1", "attempt_2")
FALLBACK_GRID = [[0]]

Submission = dict[str, list[dict[str, list[list[int]]]]]

# Error categories of a test output, from best to worst.
SOLVED = "solved"
OFF_BY_FEW = "off_by_few"
WRONG_CELLS = "wrong_cells"
WRONG_COLOURS = "wrong_colours"
WRONG_SHAPE = "wrong_shape"
MISSING = "missing"


@dataclass(frozen=True)
class OutputResult:
    """The verdict on one test output; ``wrong_cells`` is for the closer attempt."""

    index: int
    category: str
    solved_by: int | None = None
    wrong_cells: int | None = None

    @property
    def solved(self) -> bool:
        return self.category == SOLVED


@dataclass(frozen=True)
class TaskResult:
    task_id: str
    outputs: tuple[OutputResult, ...]

    @property
    def solved_outputs(self) -> int:
        return sum(result.solved for result in self.outputs)


@dataclass(frozen=True)
class ScoreReport:
    tasks: tuple[TaskResult, ...]

    @property
    def total_outputs(self) -> int:
        return sum(len(task.outputs) for task in self.tasks)

    @property
    def solved_outputs(self) -> int:
        return sum(task.solved_outputs for task in self.tasks)

    @property
    def score(self) -> float:
        return self.solved_outputs / self.total_outputs if self.total_outputs else 0.0

    @property
    def solved_tasks(self) -> list[str]:
        """Tasks with every test output solved."""
        return [t.task_id for t in self.tasks if t.solved_outputs == len(t.outputs)]

    def categories(self) -> Counter[str]:
        return Counter(result.category for task in self.tasks for result in task.outputs)

    def outcome(self) -> dict[str, bool]:
        """``task_id:index`` -> solved, the unit a regression report compares."""
        return {
            f"{task.task_id}:{result.index}": result.solved
            for task in self.tasks
            for result in task.outputs
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "solved_outputs": self.solved_outputs,
            "total_outputs": self.total_outputs,
            "solved_tasks": self.solved_tasks,
            "categories": dict(sorted(self.categories().items())),
            "tasks": {
                task.task_id: [
                    {"category": r.category, "solved_by": r.solved_by, "wrong_cells": r.wrong_cells}
                    for r in task.outputs
                ]
                for task in self.tasks
            },
        }

    def markdown(self) -> str:
        lines = [
            f"**Score: {self.solved_outputs}/{self.total_outputs} test outputs "
            f"({self.score:.1%})**, {len(self.solved_tasks)} of {len(self.tasks)} tasks fully "
            "solved.",
            "",
            "| category | test outputs |",
            "| --- | ---: |",
        ]
        lines += [f"| {name} | {count} |" for name, count in sorted(self.categories().items())]
        return "\n".join(lines) + "\n"


def judge_output(
    truth: Grid, attempts: Sequence[Grid | None], *, off_by_few: int, index: int = 0
) -> OutputResult:
    """Solved by an exact match of either attempt; otherwise how close the closer one came."""
    guesses = [(n, g) for n, g in enumerate(attempts[: len(ATTEMPT_KEYS)], 1) if g is not None]
    if not guesses:
        return OutputResult(index, MISSING)
    for number, guess in guesses:
        if np.array_equal(guess, truth):
            return OutputResult(index, SOLVED, solved_by=number, wrong_cells=0)
    same_shape = [guess for _, guess in guesses if guess.shape == truth.shape]
    if not same_shape:
        return OutputResult(index, WRONG_SHAPE)
    closest = min(same_shape, key=lambda guess: int(np.count_nonzero(guess != truth)))
    wrong = int(np.count_nonzero(closest != truth))
    if set(np.unique(closest).tolist()) != set(np.unique(truth).tolist()):
        return OutputResult(index, WRONG_COLOURS, wrong_cells=wrong)
    category = OFF_BY_FEW if wrong <= off_by_few else WRONG_CELLS
    return OutputResult(index, category, wrong_cells=wrong)


def attempts_for(submission: Mapping[str, Any], task_id: str, index: int) -> list[Grid | None]:
    """The two attempt grids for one test output; None for a missing or malformed one."""
    entries = submission.get(task_id)
    if not isinstance(entries, list) or index >= len(entries):
        return [None, None]
    entry = entries[index]
    if not isinstance(entry, dict):
        return [None, None]
    return [valid_grid(entry.get(key)) for key in ATTEMPT_KEYS]


def score(
    tasks: Sequence[ArcTask], submission: Mapping[str, Any], *, off_by_few: int = 5
) -> ScoreReport:
    """Score a submission against tasks whose test outputs are known."""
    results = []
    for task in tasks:
        if task.test_outputs is None:
            raise ValueError(f"task {task.task_id} has no known test outputs to score against")
        results.append(
            TaskResult(
                task.task_id,
                tuple(
                    judge_output(
                        truth,
                        attempts_for(submission, task.task_id, i),
                        off_by_few=off_by_few,
                        index=i,
                    )
                    for i, truth in enumerate(task.test_outputs)
                ),
            )
        )
    return ScoreReport(tuple(results))


def complete_submission(tasks: Sequence[ArcTask], predictions: Mapping[str, Any]) -> Submission:
    """The competition format: every task, every test input in order, both attempt keys.

    Missing or malformed attempts are filled (attempt 2 repeats attempt 1, else [[0]]) so
    the file is always accepted; they score as wrong, never as right.
    """
    submission: Submission = {}
    for task in tasks:
        entries = []
        for i in range(len(task.test_inputs)):
            first, second = attempts_for(predictions, task.task_id, i)
            first = first if first is not None else second
            second = second if second is not None else first
            entries.append(
                {
                    "attempt_1": FALLBACK_GRID if first is None else first.tolist(),
                    "attempt_2": FALLBACK_GRID if second is None else second.tolist(),
                }
            )
        submission[task.task_id] = entries
    return submission


def write_submission(path: str | Path, submission: Submission) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(submission, separators=(",", ":")))
    return target


def read_submission(path: str | Path) -> dict[str, Any]:
    source = Path(path)
    try:
        submission = json.loads(source.read_text())
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"predictions file {source} does not exist") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"predictions file {source} is not valid JSON: {exc}") from exc
    if not isinstance(submission, dict):
        raise ValueError(f"predictions file {source} must hold an object keyed by task id")
    return submission


@dataclass(frozen=True)
class Regression:
    """How a run changed relative to a baseline, per test output (``task_id:index``)."""

    newly_solved: list[str]
    newly_failed: list[str]
    still_solved: list[str]
    only_in_baseline: list[str]
    only_in_current: list[str]

    def to_json(self) -> dict[str, list[str]]:
        return {
            "newly_solved": self.newly_solved,
            "newly_failed": self.newly_failed,
            "still_solved": self.still_solved,
            "only_in_baseline": self.only_in_baseline,
            "only_in_current": self.only_in_current,
        }

    def markdown(self) -> str:
        return (
            f"Against the baseline: {len(self.newly_solved)} newly solved, "
            f"{len(self.newly_failed)} newly failed, {len(self.still_solved)} still solved.\n"
            + "".join(f"- newly solved: {key}\n" for key in self.newly_solved)
            + "".join(f"- newly failed: {key}\n" for key in self.newly_failed)
        )


def regression(baseline: ScoreReport, current: ScoreReport) -> Regression:
    before, after = baseline.outcome(), current.outcome()
    common = [key for key in after if key in before]
    return Regression(
        newly_solved=[k for k in common if after[k] and not before[k]],
        newly_failed=[k for k in common if before[k] and not after[k]],
        still_solved=[k for k in common if before[k] and after[k]],
        only_in_baseline=[k for k in before if k not in after],
        only_in_current=[k for k in after if k not in before],
    )
