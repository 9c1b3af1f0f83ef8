"""Helpers shared by the ml.video tests (a uniquely named module, unlike conftest)."""

from __future__ import annotations

from pathlib import Path

from ml.video.configs import DatasetConfig, TrainConfig
from worker.context import JobContext


def tiny_dataset_config(**overrides: object) -> DatasetConfig:
    values: dict[str, object] = {
        "num_samples": 48,
        "num_frames": 8,
        "image_size": (16, 16),
        "shard_size": 16,
        "workers": 1,
        "seed": 7,
    }
    values.update(overrides)
    return DatasetConfig.model_validate(values)


def make_context(root: Path, config: dict[str, object] | None = None) -> JobContext:
    """A job context as the agent would set it up, without touching the environment."""
    return JobContext(
        experiment_id="test",
        attempt=1,
        config=config or {},
        checkpoint_root=root / "checkpoints",
        progress_file=root / "progress.jsonl",
        stop_file=root / "stop",
        output_dir=root / "output",
    )


def tiny_train_config(**overrides: object) -> TrainConfig:
    values: dict[str, object] = {
        "model": {"backbone": "slowfast", "width": 8, "alpha": 2},
        "forecast_horizon": 2,
        "val_fraction": 0.2,
        "test_fraction": 0.25,
        "batch_size": 8,
        "max_steps": 6,
        "eval_every": 3,
        "checkpoint_every": 3,
        "log_every": 2,
        "warmup_steps": 2,
        "seed": 1,
    }
    values.update(overrides)
    return TrainConfig.model_validate(values)
