"""Bench: the video-branches pipeline at demo size, each stage run as Baton runs a job.

dataset (ml.video.dataset) -> one training per backbone (ml.video.train) -> comparison
(ml.video.compare). Every stage is ``python -m ml.video.<stage>_job`` with the job
contract's environment variables; the trainings read the dataset stage's output directory.

    python bench/video_branches.py [--workdir DIR] [--backbones i3d slowfast] [--threads 1]

Prints the comparison table: test accuracy per backbone and the forecasting MAE 4 frames
ahead, normalised by each trajectory's diameter.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--backbones", nargs="+", default=["i3d", "slowfast"])
    # One thread by default: on a small shared CPU, torch's thread pool spinning against
    # other processes made a training step ~15x slower than single-threaded.
    parser.add_argument("--threads", type=int, default=1, help="torch threads per training")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="video-bench-"))
    print(f"[bench] workdir {workdir}", flush=True)

    dataset_config = json.loads((CONFIGS / "dataset_demo.json").read_text())
    dataset = run_stage("dataset", "ml.video.dataset_job", dataset_config, workdir)

    runs = []
    for backbone in args.backbones:
        config = json.loads((CONFIGS / f"train_{backbone}_demo.json").read_text())
        config["dataset_dir"] = dataset["dataset_dir"]
        config["num_threads"] = args.threads
        trained = run_stage(backbone, "ml.video.train_job", config, workdir)
        runs.append(trained["output_dir"])
        print(
            f"[bench] {backbone}: accuracy {trained['test_accuracy']:.1%}, forecast nMAE@"
            f"{trained['forecast_horizon']} {trained['test_forecast_nmae_at_horizon']:.1%}"
            f" ({trained['steps']} steps, {trained['seconds']:.0f}s)",
            flush=True,
        )

    run_stage("compare", "ml.video.compare_job", {"runs": runs}, workdir)


if __name__ == "__main__":
    main()
