from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ml.arc.data import ArcTask, Example
from ml.arc.scoring import (
    MISSING,
    OFF_BY_FEW,
    SOLVED,
    WRONG_CELLS,
    WRONG_COLOURS,
    WRONG_SHAPE,
    complete_submission,
    read_submission,
    regression,
    score,
    write_submission,
)


def g(rows) -> np.ndarray:
    return np.array(rows, dtype=np.uint8)


TRUTH_A = [[1, 2], [3, 4]]
TRUTH_B0 = [[5, 5, 5]]
TRUTH_B1 = [[0, 1], [1, 0]]
TRUTH_C = [[7] * 4 for _ in range(4)]


@pytest.fixture
def tasks() -> list[ArcTask]:
    demo = (Example(g([[0]]), g([[0]])),)
    return [
        ArcTask("a", demo, (g([[0]]),), (g(TRUTH_A),)),
        ArcTask("b", demo, (g([[0]]), g([[1]])), (g(TRUTH_B0), g(TRUTH_B1))),
        ArcTask("c", demo, (g([[0]]),), (g(TRUTH_C),)),
    ]


def test_score_counts_test_outputs_with_two_attempts(tasks) -> None:
    submission = {
        "a": [{"attempt_1": [[9]], "attempt_2": TRUTH_A}],  # second attempt right
        "b": [
            {"attempt_1": TRUTH_B0, "attempt_2": [[0]]},  # first attempt right
            {"attempt_1": [[1, 0], [0, 1]], "attempt_2": [[0, 1], [1, 1]]},  # 1 cell off
        ],
        # "c" is missing entirely
    }
    report = score(tasks, submission)
    assert (report.solved_outputs, report.total_outputs) == (2, 4)
    assert report.score == pytest.approx(0.5)
    assert report.solved_tasks == ["a"]
    results = {t.task_id: t.outputs for t in report.tasks}
    assert results["a"][0].solved_by == 2
    assert results["b"][0].solved_by == 1
    assert (results["b"][1].category, results["b"][1].wrong_cells) == (OFF_BY_FEW, 1)
    assert results["c"][0].category == MISSING
    assert report.categories() == {SOLVED: 2, OFF_BY_FEW: 1, MISSING: 1}


@pytest.mark.parametrize(
    ("attempts", "category", "wrong"),
    [
        ([[[1, 2, 0], [3, 4, 0]], [[1]]], WRONG_SHAPE, None),
        ([[[1, 2], [3, 5]], [[1, 2], [3, 3]]], WRONG_COLOURS, 1),
        ([[[4, 3], [2, 1]], [[1]]], WRONG_CELLS, 4),
        ([[[1, 2], [3, 3]], [[4, 3], [2, 1]]], WRONG_COLOURS, 1),
        ([[[1, 2], [3]], "x"], MISSING, None),
    ],
)
def test_error_analysis(tasks, attempts, category, wrong) -> None:
    submission = {"a": [dict(zip(("attempt_1", "attempt_2"), attempts, strict=True))]}
    (result,) = score(tasks[:1], submission, off_by_few=3).tasks[0].outputs
    assert (result.category, result.wrong_cells) == (category, wrong)


def test_off_by_few_threshold(tasks) -> None:
    near = [[1, 2], [4, 3]]
    submission = {"a": [{"attempt_1": near, "attempt_2": near}]}
    assert score(tasks[:1], submission, off_by_few=2).tasks[0].outputs[0].category == OFF_BY_FEW
    assert score(tasks[:1], submission, off_by_few=1).tasks[0].outputs[0].category == WRONG_CELLS


def test_scoring_needs_known_outputs(tasks) -> None:
    blind = ArcTask("x", tasks[0].train, tasks[0].test_inputs, None)
    with pytest.raises(ValueError, match="no known test outputs"):
        score([blind], {})


def test_submission_has_every_task_test_input_and_attempt(tasks, tmp_path: Path) -> None:
    predictions = {
        "a": [{"attempt_1": TRUTH_A}],  # attempt_2 missing
        "b": [{"attempt_2": TRUTH_B0}],  # attempt_1 missing, second test input missing
        "zzz": [{"attempt_1": [[1]], "attempt_2": [[1]]}],  # not a task: dropped
    }
    submission = complete_submission(tasks, predictions)
    assert list(submission) == ["a", "b", "c"]
    assert [len(submission[t.task_id]) for t in tasks] == [1, 2, 1]
    assert all(set(e) == {"attempt_1", "attempt_2"} for es in submission.values() for e in es)
    assert submission["a"][0] == {"attempt_1": TRUTH_A, "attempt_2": TRUTH_A}
    assert submission["b"][0] == {"attempt_1": TRUTH_B0, "attempt_2": TRUTH_B0}
    assert submission["b"][1] == {"attempt_1": [[0]], "attempt_2": [[0]]}
    path = write_submission(tmp_path / "out" / "submission.json", submission)
    assert json.loads(path.read_text()) == submission
    assert read_submission(path) == submission
    assert score(tasks, submission).solved_outputs == 2


def test_read_submission_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_submission(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_submission(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ValueError, match="keyed by task id"):
        read_submission(tmp_path / "list.json")


def test_regression_report(tasks) -> None:
    before = score(tasks, {"a": [{"attempt_1": TRUTH_A}], "b": [{"attempt_1": TRUTH_B0}]})
    after = score(
        tasks,
        {"b": [{"attempt_1": TRUTH_B0}, {"attempt_1": TRUTH_B1}], "c": [{"attempt_1": TRUTH_C}]},
    )
    change = regression(before, after)
    assert change.newly_solved == ["b:1", "c:0"]
    assert change.newly_failed == ["a:0"]
    assert change.still_solved == ["b:0"]
    assert "2 newly solved, 1 newly failed" in change.markdown()
    fewer = score(tasks[:1], {})
    assert regression(before, fewer).only_in_baseline == ["b:0", "b:1", "c:0"]


def test_report_json_and_markdown(tasks) -> None:
    report = score(tasks, {"a": [{"attempt_1": TRUTH_A}]})
    as_json = report.to_json()
    assert as_json["score"] == 0.25 and as_json["solved_tasks"] == ["a"]
    assert as_json["tasks"]["b"][1]["category"] == MISSING
    assert "1/4 test outputs" in report.markdown()
