"""Must-show: pass@2 of SmolLM2-135M-Instruct without and with test-time training, on CPU.

Both runs use the same config, seeds and inference views; they differ only in
``train.enabled``. The subset and the reduced hyperparameters are those of
``configs/arc/ttt-smollm2-cpu.json``: the 10 ARC-AGI-1 evaluation tasks with the shortest
recipe-format prompts under the SmolLM2 tokenizer (full chat text including the test output,
358-619 tokens; ties by task id), so that a CPU run fits in about 25 minutes.
pass@2 = test outputs solved by either of two attempts / all test outputs.

Run: ``.venv/bin/python bench/arc_ttt.py`` (add ``--json FILE`` to keep the raw numbers).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from ml.arc.configs import TTTJobConfig  # noqa: E402
from ml.arc.data import Episode, load_tasks  # noqa: E402
from ml.arc.formatting import PromptBuilder  # noqa: E402
from ml.arc.inference import as_attempts  # noqa: E402
from ml.arc.modeling import load_model  # noqa: E402
from ml.arc.scoring import score  # noqa: E402
from ml.arc.solve import solve_task  # noqa: E402
from ml.common.device import choose_device  # noqa: E402
from ml.common.seeding import seed_everything  # noqa: E402

DEFAULT_CONFIG = REPO_ROOT / "configs" / "arc" / "ttt-smollm2-cpu.json"
RECIPE = (
    "Published (Akyürek et al. 2024, fine-tuned Llama models, full recipe): 1B 6.2% -> 36.2%, "
    "8B 17.5% -> 45.0% pass@2 on their 80-task ARC-AGI-1 evaluation subset; 8B 53.0% on all "
    "400 evaluation tasks."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--limit", type=int, help="only the first N tasks of the subset")
    parser.add_argument("--json", type=Path, help="write the raw results here")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        # On a shared CPU, spinning OpenMP threads slow each other down by an order of magnitude.
        torch.set_num_threads(args.threads)

    config = TTTJobConfig.model_validate(json.loads(args.config.read_text()))
    baseline = config.model_copy(
        update={"train": config.train.model_copy(update={"enabled": False})}
    )
    seed_everything(config.seed)
    device = choose_device(config.model.device)
    tasks = load_tasks(config.data)[: args.limit]
    started = time.perf_counter()
    model, tokenizer = load_model(config.model, device)
    load_seconds = time.perf_counter() - started
    builder = PromptBuilder(config.prompt, tokenizer)

    rows, runs = [], {"baseline": {}, "ttt": {}}
    for task in tasks:
        before = solve_task(model, builder, task, baseline, device=device)
        after = solve_task(model, builder, task, config, device=device)
        runs["baseline"][task.task_id] = as_attempts(before.guesses)
        runs["ttt"][task.task_id] = as_attempts(after.guesses)
        prompt = builder.prompt(Episode(task.train, task.test_inputs[0]))
        rows.append(
            {
                "task": task.task_id,
                "demos": len(task.train),
                "tests": len(task.test_inputs),
                "prompt_tokens": len(tokenizer(prompt, add_special_tokens=False)["input_ids"]),
                "baseline": before.stats,
                "ttt": after.stats,
                "baseline_solved": score([task], runs["baseline"]).solved_outputs,
                "ttt_solved": score([task], runs["ttt"]).solved_outputs,
            }
        )
        print(
            f"{task.task_id}: baseline {rows[-1]['baseline_solved']}, "
            f"TTT {rows[-1]['ttt_solved']} of {len(task.test_inputs)} "
            f"({before.stats['seconds']:.0f} s + {after.stats['seconds']:.0f} s)",
            flush=True,
        )

    # Scored before the fallback [[0]] fill, so that "no parsable grid" shows as missing.
    reports = {name: score(tasks, sub) for name, sub in runs.items()}
    print()
    print(
        f"Model load: {load_seconds:.1f} s on {device}; {len(tasks)} tasks, "
        f"{reports['ttt'].total_outputs} test outputs.\n"
    )
    print(
        "| task | demos | prompt tokens | TTT examples / steps | final loss | "
        "baseline s | TTT s | baseline | TTT |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    for row in rows:
        ttt = row["ttt"]
        loss = f"{ttt['final_loss']:.3f}" if ttt.get("final_loss") is not None else "-"
        print(
            f"| {row['task']} | {row['demos']} | {row['prompt_tokens']} | "
            f"{ttt['examples']} / {ttt['steps']} | {loss} | {row['baseline']['seconds']:.0f} | "
            f"{ttt['seconds']:.0f} | {row['baseline_solved']}/{row['tests']} | "
            f"{row['ttt_solved']}/{row['tests']} |"
        )
    print()
    print("| run | pass@2 | solved / test outputs | seconds per task | error categories |")
    print("| --- | ---: | ---: | ---: | --- |")
    for name, label in [("baseline", "SmolLM2-135M, no TTT"), ("ttt", "SmolLM2-135M + TTT")]:
        report = reports[name]
        seconds = sum(row[name]["seconds"] for row in rows) / max(len(rows), 1)
        categories = ", ".join(f"{k} {v}" for k, v in sorted(report.categories().items()))
        print(
            f"| {label} | {report.score:.1%} | {report.solved_outputs} / "
            f"{report.total_outputs} | {seconds:.0f} | {categories} |"
        )
    print()
    print(RECIPE)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "config": config.model_dump(mode="json"),
                    "device": device,
                    "load_seconds": load_seconds,
                    "rows": rows,
                    "pass_at_2": {name: report.score for name, report in reports.items()},
                    "submissions": runs,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
