"""Job kind ml.video.describe: ``python -m ml.video.describe_job [config.json]``.

Reads a finished ml.video.train run (its metrics.json and predictions.jsonl), writes a
description of each chosen test video from the branch's own class, fit and forecast, by the
configured language model and by the template baseline, and scores both for coherence.

Artifacts: ``descriptions.jsonl`` (per video: the model's description and the template's at
the top level with their scores, the ground truth under ``truth``) and ``metrics.json``: the
training's result plus the description metrics, which is what ml.video.compare reads.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ml.common.checkpoints import read_json, write_json_atomic
from ml.video.coherence import coherence_rates, score_description
from ml.video.configs import KIND_TRAIN, DescribeConfig
from ml.video.describers import MissingSecretError, make_describer
from ml.video.equations import fit_from_json
from ml.video.evaluate import PREDICTIONS_FILE
from ml.video.facts import Facts, facts_of, prompt_lines, template_description
from ml.video.job import METRICS_FILE, output_dir, run_until_stopped, start_job
from worker.context import JobContext

DESCRIPTIONS_FILE = "descriptions.jsonl"
EXIT_CONFIG_ERROR = 2


def run_dir_of(config: DescribeConfig, ctx: JobContext) -> Path:
    """The configured run, or else the training run this job depends on."""
    if config.run is not None:
        return Path(config.run)
    for item in ctx.inputs():
        if item.kind == KIND_TRAIN and item.directory is not None:
            return item.directory
    raise ValueError("nothing to describe: name a run, or depend on an ml.video.train experiment")


def chosen_records(run: Path, limit_per_class: int | None) -> list[dict[str, Any]]:
    """The test predictions to describe: all, or the first N of each true class."""
    path = run / PREDICTIONS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: is {run} a finished ml.video.train run?")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    if records and "fit" not in records[0]:
        raise ValueError(
            f"{path} has no fitted equations: train with model.heads including"
            ' "classify" and "track"'
        )
    if limit_per_class is None:
        return records
    taken: dict[str, int] = {}
    chosen = []
    for record in records:
        shape = record["truth"]["class"]
        if taken.get(shape, 0) < limit_per_class:
            taken[shape] = taken.get(shape, 0) + 1
            chosen.append(record)
    return chosen


def record_facts(record: dict[str, Any]) -> Facts:
    return facts_of(fit_from_json(record["fit"]), np.asarray(record["forecast"]))


def describe(config: DescribeConfig, ctx: JobContext) -> dict[str, Any]:
    if config.num_threads is not None:
        import torch

        torch.set_num_threads(config.num_threads)
    run = run_dir_of(config, ctx)
    trained = read_json(run / METRICS_FILE)
    records = chosen_records(run, config.limit_per_class)
    # Fail on a missing key or model before any work: never a silent fallback.
    describer = make_describer(config.describer)
    horizon = int(trained["forecast_horizon"])
    facts = [record_facts(record) for record in records]
    templates = [template_description(f, horizon) for f in facts]
    written = (
        describer.describe([prompt_lines(f, horizon) for f in facts])
        if describer is not None
        else templates
    )
    out = output_dir(ctx)
    out.mkdir(parents=True, exist_ok=True)
    model_scores, template_scores = [], []
    with (out / DESCRIPTIONS_FILE).open("w") as lines:
        for record, fact, text, template in zip(records, facts, written, templates, strict=True):
            model_scores.append(score_description(text, fact))
            template_scores.append(score_description(template, fact))
            row = {
                "index": record["index"],
                "predicted": record["predicted"],
                "equation": record["equation"],
                "description": text,
                "scores": model_scores[-1],
                "template_description": template,
                "template_scores": template_scores[-1],
                "truth": {key: record["truth"][key] for key in ("class", "description")},
            }
            lines.write(json.dumps(row) + "\n")
    rates = coherence_rates(model_scores)
    template_rates = coherence_rates(template_scores)
    result = {
        **trained,
        "name": config.branch or trained.get("experiment_id") or run.name,
        "describer": config.describer.model if describer is not None else "template",
        "num_described": len(records),
        "description_coherence": rates["coherent"],
        "template_description_coherence": template_rates["coherent"],
        "description_checks": rates,
        "template_description_checks": template_rates,
    }
    write_json_atomic(out / METRICS_FILE, result)
    ctx.result(**result)
    return result


def main(argv: list[str] | None = None) -> int:
    ctx, config = start_job(DescribeConfig, sys.argv[1:] if argv is None else argv)
    try:
        return run_until_stopped(lambda: describe(config, ctx))
    except MissingSecretError as error:
        # A configuration problem, not a crash: one line that says what to do.
        print(f"ml.video.describe: {error}", file=sys.stderr)
        return EXIT_CONFIG_ERROR


if __name__ == "__main__":
    sys.exit(main())
