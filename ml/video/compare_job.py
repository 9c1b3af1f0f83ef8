"""Job kind ml.video.compare: ``python -m ml.video.compare_job [config.json]``.

Ranks finished ml.video.describe or ml.video.train runs (result dicts or output
directories) and writes the table to the job's output directory.
"""

from __future__ import annotations

import sys
from typing import Any

from ml.video.compare import compare_runs, markdown_table, summary, write_comparison
from ml.video.configs import KIND_DESCRIBE, KIND_TRAIN, CompareConfig
from ml.video.job import output_dir, run_until_stopped, start_job
from worker.context import JobContext


def runs_of(config: CompareConfig, ctx: JobContext) -> list[dict[str, Any] | str]:
    """The configured runs, or else the results of the runs this one depends on: the
    describe runs (they carry their training's result), or the training runs if none."""
    if config.runs:
        return config.runs
    inputs = ctx.inputs()
    for kind in (KIND_DESCRIBE, KIND_TRAIN):
        runs: list[dict[str, Any] | str] = [
            {"name": item.name, **item.result} for item in inputs if item.kind == kind
        ]
        if runs:
            return runs
    raise ValueError(
        "nothing to compare: name runs, or depend on ml.video.describe or ml.video.train"
        " experiments"
    )


def compare(config: CompareConfig, ctx: JobContext) -> list[dict[str, Any]]:
    rows = compare_runs(runs_of(config, ctx), config.rank_by, config.higher_is_better)
    write_comparison(rows, output_dir(ctx))
    print(markdown_table(rows))
    ctx.result(
        best=rows[0]["name"],
        rank_by=config.rank_by,
        table=[summary(row) for row in rows],
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    ctx, config = start_job(CompareConfig, sys.argv[1:] if argv is None else argv)
    return run_until_stopped(lambda: compare(config, ctx))


if __name__ == "__main__":
    sys.exit(main())
