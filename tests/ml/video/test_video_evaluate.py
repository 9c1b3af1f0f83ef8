from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ml.video.compare import compare_runs, markdown_table, write_comparison
from ml.video.dataset import load_dataset
from ml.video.evaluate import (
    CONFUSION_PNG,
    FORECAST_PNG,
    PREDICTIONS_FILE,
    classification_metrics,
    evaluate,
    forecast_metrics,
    normalised_errors,
    write_artifacts,
)
from ml.video.job import METRICS_FILE
from ml.video.losses import TargetNorm
from ml.video.splits import make_splits, split_indices

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WEIGHTS = {"forecast": 1.0, "track": 1.0}


def test_classification_metrics() -> None:
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    predicted = torch.tensor([0, 1, 1, 1, 2, 3, 3, 3])
    metrics = classification_metrics(labels, predicted)
    assert metrics["accuracy"] == pytest.approx(6 / 8)
    assert metrics["per_class_accuracy"] == {
        "linear": 0.5,
        "circular": 1.0,
        "helical": 0.5,
        "parabolic": 1.0,
    }
    assert metrics["confusion_matrix"] == [[1, 1, 0, 0], [0, 2, 0, 0], [0, 0, 1, 1], [0, 0, 0, 2]]


def test_forecast_error_is_normalised_by_trajectory_scale() -> None:
    future = torch.zeros(2, 4, 3)
    forecast = torch.zeros(2, 4, 3)
    forecast[0, 3] = torch.tensor([0.3, 0.0, 0.0])  # 0.1 mean absolute error at 4 ahead
    forecast[1, 3] = torch.tensor([0.6, 0.0, 0.0])  # the same error relative to scale 2
    errors = normalised_errors(forecast, future, torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(errors[:, 3], torch.tensor([0.1, 0.1]))
    metrics = forecast_metrics(errors)
    assert metrics["forecast_nmae_at_horizon"] == pytest.approx(0.1)
    assert metrics["forecast_nmae"] == pytest.approx(0.025)
    assert metrics["forecast_nmae_by_horizon"] == pytest.approx([0, 0, 0, 0.1])


def test_splits_are_stratified_disjoint_and_complete() -> None:
    labels = torch.arange(100) % 4
    parts = split_indices(labels, 0.1, 0.2, seed=3)
    merged = torch.cat(list(parts.values())).sort().values
    assert torch.equal(merged, torch.arange(100))
    assert labels[parts["test"]].bincount().tolist() == [5, 5, 5, 5]
    assert torch.equal(parts["test"], split_indices(labels, 0.1, 0.2, seed=3)["test"])


def test_perfect_predictions_score_perfectly_and_write_artifacts(
    tiny_dataset_dir: Path, tmp_path: Path
) -> None:
    data, _ = load_dataset(tiny_dataset_dir)
    test = make_splits(data, observed=6, horizon=2, val_fraction=0.2, test_fraction=0.25, seed=0)[
        "test"
    ]
    norm = TargetNorm.fit(test.future)
    outputs = {
        "classify": torch.nn.functional.one_hot(test.labels, 4).float() * 20,
        "forecast": norm.normalise(test.future),
        "track": norm.normalise(test.track),
    }
    metrics, per_sample = evaluate(outputs, test, norm, WEIGHTS, equations=True)
    assert metrics["accuracy"] == 1.0
    assert metrics["forecast_nmae"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["track_nmae"] == pytest.approx(0.0, abs=1e-6)
    # The true class fitted to the true track is the truth itself: every equation parses and
    # every parameter is right.
    assert metrics["equation_parse_rate"] == 1.0
    assert metrics["equation_correct_rate"] == 1.0
    assert set(metrics["param_within_10pct"].values()) == {1.0}
    files = write_artifacts(tmp_path, test, metrics, per_sample)
    assert {f.name for f in files} == {PREDICTIONS_FILE, CONFUSION_PNG, FORECAST_PNG}
    for png in (CONFUSION_PNG, FORECAST_PNG):
        assert (tmp_path / png).read_bytes()[:8] == PNG_MAGIC
    records = [json.loads(line) for line in (tmp_path / PREDICTIONS_FILE).read_text().splitlines()]
    assert len(records) == len(test)
    first = records[0]
    assert first["index"] == int(test.indices[0])
    assert first["truth"]["class"] == first["predicted"]
    assert first["truth"]["equation"] == data.equations[first["index"]]
    assert len(first["forecast"]) == 2 and len(first["forecast"][0]) == 3
    assert first["fit"]["params"] == first["truth"]["fit"]["params"]


def test_compare_ranks_result_dicts_and_run_directories(tmp_path: Path) -> None:
    run_dir = tmp_path / "slowfast-run"
    run_dir.mkdir()
    (run_dir / METRICS_FILE).write_text(
        json.dumps(
            {
                "experiment_id": "exp-7",
                "backbone": "slowfast",
                "test_accuracy": 0.97,
                "forecast_horizon": 4,
            }
        )
    )
    runs: list[dict[str, object] | str] = [
        {"backbone": "i3d", "test_accuracy": 0.91, "test_forecast_nmae_at_horizon": 0.08},
        str(run_dir),
        {"name": "broken", "backbone": "i3d"},
    ]
    rows = compare_runs(runs, "test_accuracy", higher_is_better=True)
    assert [r["name"] for r in rows] == ["exp-7", "i3d", "broken"]
    by_error = compare_runs(runs[:1], "test_forecast_nmae_at_horizon", higher_is_better=False)
    assert by_error[0]["name"] == "i3d"
    table = markdown_table(rows)
    assert "nMAE@4" in table
    assert "| exp-7 | slowfast | - | 97.0% |" in table
    md, data = write_comparison(rows, tmp_path / "out")
    assert md.read_text() == table
    assert [r["name"] for r in json.loads(data.read_text())] == ["exp-7", "i3d", "broken"]
