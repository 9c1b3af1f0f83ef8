from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from video_helpers import make_context, tiny_dataset_config, tiny_train_config

from ml.common.checkpoints import CheckpointError
from ml.video.evaluate import CONFUSION_PNG, FORECAST_PNG, PREDICTIONS_FILE
from ml.video.job import METRICS_FILE
from ml.video.train import STATE_FILE, Trainer, epoch_order, run_training, warmup_cosine
from worker.context import staged_name


def read_messages(ctx_root: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (ctx_root / "progress.jsonl").read_text().splitlines()]


def test_training_job_runs_end_to_end_on_an_inline_dataset(tmp_path: Path) -> None:
    config = tiny_train_config(dataset=tiny_dataset_config().model_dump())
    ctx = make_context(tmp_path)
    result = run_training(config, ctx)

    out = tmp_path / "output"
    assert (out / "dataset" / "manifest.json").is_file()
    assert result["steps"] == 6 and result["backbone"] == "slowfast"
    assert result["num_test"] == 12 and result["num_train"] == 28
    assert 0.0 <= result["test_accuracy"] <= 1.0
    assert set(result["test_per_class_accuracy"]) == {"linear", "circular", "helical", "parabolic"}
    assert len(result["test_forecast_nmae_by_horizon"]) == 2
    assert json.loads((out / METRICS_FILE).read_text()) == result
    for name in (PREDICTIONS_FILE, CONFUSION_PNG, FORECAST_PNG, "env.json"):
        assert (out / name).is_file(), name
    assert list((out / "tensorboard").rglob("events.out.tfevents.*"))

    messages = read_messages(tmp_path)
    checkpoints = [m["step"] for m in messages if m["type"] == "checkpoint"]
    assert checkpoints == [3, 6]
    assert (tmp_path / "checkpoints" / staged_name(6) / STATE_FILE).is_file()
    progress = [m for m in messages if m["type"] == "progress"]
    assert [m["step"] for m in progress] == [2, 3, 4, 6]
    assert "val_accuracy" in progress[1]["metrics"] and "loss" in progress[0]["metrics"]
    assert messages[-1] == {"type": "result", "values": result}


def test_early_stopping_ends_training_when_validation_stops_improving(
    tiny_dataset_dir: Path, tmp_path: Path
) -> None:
    # A huge learning rate makes validation loss erratic, so it soon fails to improve.
    config = tiny_train_config(
        dataset_dir=str(tiny_dataset_dir),
        lr=1.0,
        max_steps=60,
        eval_every=1,
        early_stopping_patience=2,
        warmup_steps=0,
    )
    result = run_training(config, make_context(tmp_path))
    assert result["stopped_early"]
    assert result["steps"] < 60
    assert result["steps"] == result["best_step"] + 2


def test_a_missing_resume_checkpoint_fails_fast(tiny_dataset_dir: Path, tmp_path: Path) -> None:
    config = tiny_train_config(dataset_dir=str(tiny_dataset_dir))
    ctx = make_context(tmp_path)
    ctx.resume_dir = tmp_path / "downloaded" / staged_name(3)
    with pytest.raises(CheckpointError, match="does not exist"):
        Trainer(config, ctx).resume()
    ctx.resume_dir.mkdir(parents=True)
    with pytest.raises(CheckpointError, match=STATE_FILE):
        Trainer(config, ctx).resume()


def test_a_checkpoint_of_another_config_is_refused(tiny_dataset_dir: Path, tmp_path: Path) -> None:
    first = make_context(tmp_path / "a")
    run_training(tiny_train_config(dataset_dir=str(tiny_dataset_dir)), first)
    ctx = make_context(tmp_path / "b")
    ctx.resume_dir = first.checkpoint_root / staged_name(6)
    other = tiny_train_config(dataset_dir=str(tiny_dataset_dir), lr=0.01)
    with pytest.raises(ValueError, match="different config"):
        Trainer(other, ctx).resume()


def test_warmup_then_cosine_schedule() -> None:
    factor = warmup_cosine(warmup=4, total=14)
    assert [factor(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert factor(9) == pytest.approx(0.5)
    assert factor(14) == pytest.approx(0.0)
    assert factor(20) == pytest.approx(0.0)


def test_batch_order_is_a_function_of_seed_and_epoch() -> None:
    a = epoch_order(50, seed=1, epoch=3)
    assert torch.equal(a, epoch_order(50, seed=1, epoch=3))
    assert torch.equal(a.sort().values, torch.arange(50))
    assert not torch.equal(a, epoch_order(50, seed=1, epoch=4))
    assert not torch.equal(a, epoch_order(50, seed=2, epoch=3))
