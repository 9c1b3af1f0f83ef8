"""Job kind ml.video.dataset: ``python -m ml.video.dataset_job [config.json]``.

Writes the sharded dataset into the job's output directory; a training job names that
directory as its ``dataset_dir``, or depends on this experiment and finds it among its
inputs. A restarted job keeps the shards already written.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ml.common.envstamp import env_stamp, write_env_stamp
from ml.video.configs import DatasetConfig
from ml.video.dataset import write_dataset
from ml.video.job import StopRequested, output_dir, run_until_stopped, start_job
from worker.context import JobContext

ENV_FILE = "env.json"


def generate(config: DatasetConfig, ctx: JobContext) -> Path:
    directory = output_dir(ctx).resolve()
    write_env_stamp(directory / ENV_FILE, env_stamp(config.model_dump(mode="json"), device="cpu"))
    finished = write_dataset(
        config,
        directory,
        on_progress=lambda done, total: ctx.progress(done, total),
        should_stop=ctx.should_stop,
    )
    if not finished:
        raise StopRequested
    # Under Baton, a later stage (depends_on) may run on another machine: the dataset travels
    # to it as this experiment's final checkpoint (ctx.inputs() there).
    ctx.checkpoint(directory, config.num_samples)
    ctx.result(
        dataset_dir=str(directory),
        num_samples=config.num_samples,
        num_frames=config.num_frames,
        image_size=list(config.image_size),
    )
    return directory


def main(argv: list[str] | None = None) -> int:
    ctx, config = start_job(DatasetConfig, sys.argv[1:] if argv is None else argv)
    return run_until_stopped(lambda: generate(config, ctx))


if __name__ == "__main__":
    sys.exit(main())
