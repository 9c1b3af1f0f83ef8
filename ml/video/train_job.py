"""Job kind ml.video.train: ``python -m ml.video.train_job [config.json]``."""

from __future__ import annotations

import sys

from ml.video.configs import TrainConfig
from ml.video.job import run_until_stopped, start_job
from ml.video.train import run_training


def main(argv: list[str] | None = None) -> int:
    ctx, config = start_job(TrainConfig, sys.argv[1:] if argv is None else argv)
    return run_until_stopped(lambda: run_training(config, ctx))


if __name__ == "__main__":
    sys.exit(main())
