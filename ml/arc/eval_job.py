"""Job kind ``ml.arc.eval``: score a ``submission.json`` under ARC Prize rules.

Writes ``scores.json`` (per task and per test output, with error categories) and
``report.md`` to the output directory, and, given a baseline submission,
``regression.json`` (newly solved / newly failed test outputs). Scoring takes seconds, so
the job keeps no checkpoint: a rerun simply scores again.
Run it as ``python -m ml.arc.eval_job``. Exit codes: 0 scored, 2 unusable config or input.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import ValidationError

from ml.arc.cli import job_context
from ml.arc.configs import EVAL_KIND, EvalJobConfig
from ml.arc.data import load_tasks
from ml.arc.scoring import read_submission, regression, score
from worker.context import JobContext


def run(ctx: JobContext, config: EvalJobConfig) -> None:
    output_dir = ctx.output_dir or Path("baton-run") / "output"
    output_dir.mkdir(parents=True, exist_ok=True)
    tasks = load_tasks(config.data)
    report = score(tasks, read_submission(config.predictions), off_by_few=config.off_by_few_cells)
    ctx.progress(1, 2, score=report.score)
    (output_dir / "scores.json").write_text(json.dumps(report.to_json(), indent=1))
    markdown = report.markdown()
    values = {
        "score": report.score,
        "solved_outputs": report.solved_outputs,
        "total_outputs": report.total_outputs,
        "solved_tasks": len(report.solved_tasks),
        "categories": dict(report.categories()),
    }
    if config.baseline:
        baseline = score(
            tasks, read_submission(config.baseline), off_by_few=config.off_by_few_cells
        )
        change = regression(baseline, report)
        (output_dir / "regression.json").write_text(json.dumps(change.to_json(), indent=1))
        markdown += "\n" + change.markdown()
        values.update(
            baseline_score=baseline.score,
            newly_solved=change.newly_solved,
            newly_failed=change.newly_failed,
        )
    (output_dir / "report.md").write_text(markdown)
    ctx.progress(2, 2, score=report.score)
    ctx.result(**values)


def main(argv: list[str] | None = None) -> int:
    ctx = job_context("python -m ml.arc.eval_job", "Score an ARC submission.json.", argv)
    try:
        run(ctx, EvalJobConfig.model_validate(ctx.config))
    except ValidationError as exc:
        print(f"error: invalid {EVAL_KIND} config: {exc}", file=sys.stderr)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    else:
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
