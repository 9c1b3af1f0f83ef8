"""Job kind ml.video.train: ``python -m ml.video.train_job [config.json]``."""

from __future__ import annotations

import sys

from ml.video.configs import KIND_DATASET, TrainConfig
from ml.video.job import run_until_stopped, start_job
from ml.video.train import run_training
from worker.context import JobContext


def with_input_dataset(config: TrainConfig, ctx: JobContext) -> TrainConfig:
    """With no dataset named, use the one a prerequisite ml.video.dataset experiment made."""
    if config.dataset_dir is not None or config.dataset is not None:
        return config
    for item in ctx.inputs():
        if item.kind == KIND_DATASET and item.directory is not None:
            return config.model_copy(update={"dataset_dir": str(item.directory)})
    return config


def main(argv: list[str] | None = None) -> int:
    ctx, config = start_job(TrainConfig, sys.argv[1:] if argv is None else argv)
    config = with_input_dataset(config, ctx)
    return run_until_stopped(lambda: run_training(config, ctx))


if __name__ == "__main__":
    sys.exit(main())
