"""Bench: the video branches at demo size, each stage run as Baton runs a job.

dataset (ml.video.dataset) -> one training per backbone (ml.video.train) -> one
description run per branch (ml.video.describe: the branch's language model and the template
baseline) -> comparison (ml.video.compare). Every stage is ``python -m ml.video.<stage>_job``
with the job contract's environment variables; later stages read earlier ones' output
directories. A branch is a file in configs/video/branches/ (backbone x describer).

    python bench/video_branches.py [--workdir DIR] [--branches i3d-smollm2 slowfast-smollm2]
        [--threads 1] [--limit-per-class N]

Prints the comparison table and the seed's four metrics per branch: class accuracy,
forecast nMAE 4 frames ahead, equation correctness (parse rate; right class with every
parameter within 10%) and description coherence, beside the template's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from ml.video.configs import BranchPlan  # noqa: E402  (the repository on the path first)
from ml.video.job import METRICS_FILE  # noqa: E402

CONFIGS = REPO / "configs" / "video"


def run_stage(name: str, module: str, config: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Run one job like the agent does and return its result."""
    root = workdir / name
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(config, indent=2))
    progress = root / "progress.jsonl"
    progress.unlink(missing_ok=True)
    env = {
        **os.environ,
        "BATON_EXPERIMENT_ID": name,
        "BATON_ATTEMPT": "1",
        "BATON_CONFIG": str(root / "config.json"),
        "BATON_CHECKPOINT_DIR": str(root / "checkpoints"),
        "BATON_PROGRESS_FILE": str(progress),
        "BATON_OUTPUT_DIR": str(root / "output"),
    }
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", module], cwd=root, env=env, check=True)
    seconds = time.monotonic() - started
    results = [json.loads(line) for line in progress.read_text().splitlines()]
    (result,) = [m["values"] for m in results if m["type"] == "result"]
    print(f"[bench] {name}: {seconds:.0f}s", flush=True)
    return {**result, "seconds": round(seconds, 1), "output_dir": str(root / "output")}


def seed_metrics(row: dict[str, Any]) -> str:
    def pct(key: str) -> str:
        value = row.get(key)
        return f"{value:.1%}" if isinstance(value, int | float) else "-"

    return (
        f"| {row['name']} | {pct('test_accuracy')} | {pct('test_forecast_nmae_at_horizon')} |"
        f" {pct('test_equation_parse_rate')} | {pct('test_equation_correct_rate')} |"
        f" {pct('test_param_within_10pct_mean')} | {pct('description_coherence')} |"
        f" {pct('template_description_coherence')} | {row.get('num_described', '-')} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--branches", nargs="+", default=["i3d-smollm2", "slowfast-smollm2"])
    # One thread by default: on a small shared CPU, torch's thread pool spinning against
    # other processes made a training step ~15x slower than single-threaded.
    parser.add_argument("--threads", type=int, default=1, help="torch threads per stage")
    parser.add_argument(
        "--limit-per-class", type=int, default=None, help="override the branches' subset size"
    )
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="video-bench-"))
    print(f"[bench] workdir {workdir}", flush=True)
    plans = {
        name: BranchPlan.model_validate_json((CONFIGS / "branches" / f"{name}.json").read_text())
        for name in args.branches
    }

    dataset_config = json.loads((CONFIGS / "dataset_demo.json").read_text())
    dataset = run_stage("dataset", "ml.video.dataset_job", dataset_config, workdir)

    trained: dict[str, dict[str, Any]] = {}
    for train_file in dict.fromkeys(plan.train for plan in plans.values()):
        config = json.loads((CONFIGS / train_file).read_text())
        config["dataset_dir"] = dataset["dataset_dir"]
        config["num_threads"] = args.threads
        name = Path(train_file).stem
        trained[train_file] = run_stage(name, "ml.video.train_job", config, workdir)

    runs = []
    for name, plan in plans.items():
        describe = plan.describe.model_copy(
            update={"run": trained[plan.train]["output_dir"], "num_threads": args.threads}
        )
        if args.limit_per_class is not None:
            describe.limit_per_class = args.limit_per_class
        try:
            result = run_stage(
                name, "ml.video.describe_job", describe.model_dump(mode="json"), workdir
            )
        except subprocess.CalledProcessError:
            # e.g. an API model without its key: the job said why; the other branches go on.
            print(f"[bench] {name}: describe failed (see its error above)", flush=True)
            continue
        runs.append(result["output_dir"])

    if runs:
        run_stage("compare", "ml.video.compare_job", {"runs": runs}, workdir)
        print(
            "| branch | class accuracy | forecast nMAE@4 | eq parses | eq right | params <=10% |"
            " desc coherent | template coherent | described |"
        )
        for run in runs:
            print(seed_metrics(json.loads((Path(run) / METRICS_FILE).read_text())))


if __name__ == "__main__":
    main()
