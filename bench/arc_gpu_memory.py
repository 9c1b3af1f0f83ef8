"""ARC TTT on a random-weight Llama: peak memory and speed per phase, on the job's code path.

The measuring half of ``bench/gpu_check.sh`` (which ``bench/gpu_check.py`` drives): build a
randomly initialised Llama of a given shape straight on the device (4-bit NF4 through
bitsandbytes, as ``ml.arc.modeling.load_model`` would load it, or 16-bit), pick ARC tasks by
prompt length, and for one task measure, with the job's own functions (``training_set``,
``attach_lora``, ``AdapterTrainer``, ``queries``, ``generate``), the training phase and the
inference phase separately: peak memory of each (the peak counters are reset in between),
seconds per TTT step and per trained token, prefill seconds and seconds per generated token.
From those it extrapolates the seconds the full recipe would take on that task (every TTT
step of every epoch over the task's real TTT set, every inference batch to its token
budget: random weights never emit the stop string, so this is the worst case). An
out-of-memory error in a phase is a recorded result, not a crash.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from ml.arc.configs import TTTJobConfig
from ml.arc.data import ArcTask, Episode, batched
from ml.arc.formatting import PromptBuilder
from ml.arc.inference import fit_prompt, generate, queries
from ml.arc.memory import GIB, LlamaShape, hf_config
from ml.arc.modeling import attach_lora, detach_lora, prepare_base, set_checkpointing
from ml.arc.ttt import AdapterTrainer, EncodedExample, training_set
from ml.common.precision import device_precision
from ml.common.seeding import derive_seed

DECODER_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def llama_config(shape: LlamaShape, tokenizer: Any, max_positions: int) -> Any:
    """Llama-3's config fields (RoPE base, norm epsilon) on ``shape``, ids from ``tokenizer``."""
    return hf_config(
        shape,
        max_position_embeddings=max_positions,
        rope_theta=500000.0,
        rms_norm_eps=1e-5,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_random_model(
    config: TTTJobConfig, model_config: Any, device: str, findings: list[str]
) -> Any:
    """A random Llama on ``device`` in the form ``ml.arc.modeling.load_model`` returns.

    Nothing touches the disk: the model is initialised on the device in the compute dtype
    (8B in bf16 is 16 GB: fine on the check's 140 GB card), then, for 4-bit, every decoder
    projection is swapped for an NF4 ``Linear4bit`` the way transformers' bitsandbytes
    loader builds it (double quantisation, compute dtype as the job's), freeing the 16-bit
    weight as it goes. ``prepare_base`` is the job's own; if it fails on this machine's
    transformers, the failure goes to ``findings`` and the check carries on without it.
    """
    from transformers import AutoModelForCausalLM

    dtype = device_precision(device).dtype
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(model_config, dtype=dtype)
    if config.model.load_in_4bit:
        quantise_decoder(model, dtype, device)
    try:
        return prepare_base(model, config.model)
    except AttributeError as error:
        findings.append(f"ml.arc.modeling.prepare_base fails here: {error}")
    model.requires_grad_(False)
    set_checkpointing(model, enabled=config.model.gradient_checkpointing)
    return model


def quantise_decoder(model: Any, dtype: torch.dtype, device: str) -> None:
    import bitsandbytes as bnb

    for layer in model.model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name in DECODER_PROJECTIONS:
                old = getattr(parent, name, None)
                if old is None:
                    continue
                new = bnb.nn.Linear4bit(
                    old.in_features,
                    old.out_features,
                    bias=False,
                    compute_dtype=dtype,
                    compress_statistics=True,
                    quant_type="nf4",
                    quant_storage=torch.uint8,
                )
                new.weight = bnb.nn.Params4bit(
                    old.weight.data,
                    requires_grad=False,
                    compress_statistics=True,
                    quant_type="nf4",
                    quant_storage=torch.uint8,
                    module=new,
                ).to(device)
                setattr(parent, name, new)
                del old
    # What transformers' bitsandbytes quantizer marks; peft reads it to wrap Linear4bit.
    model.is_loaded_in_4bit = True
    release_memory()


def prompt_tokens(builder: PromptBuilder, task: ArcTask) -> int:
    """Tokens of the task's inference prompt for its first test input (all demonstrations)."""
    text = builder.prompt(Episode(task.train, task.test_inputs[0]))
    return len(builder.tokenizer(text, add_special_tokens=False)["input_ids"])


def stratify(tasks: list[ArcTask], builder: PromptBuilder, limit: int) -> dict[str, Any]:
    """Short (10th percentile), median and long (longest within ``limit``) tasks by prompt."""
    sized = sorted((prompt_tokens(builder, task), task.task_id) for task in tasks)
    fitting = [item for item in sized if item[0] < limit]
    if not fitting:
        raise ValueError(f"no task's prompt is shorter than {limit} tokens")
    picks = {
        "short": fitting[len(fitting) // 10],
        "median": fitting[len(fitting) // 2],
        "long": fitting[-1],
    }
    return {name: {"task": task_id, "prompt_tokens": n} for name, (n, task_id) in picks.items()}


def release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


@contextmanager
def phase(record: dict[str, Any], device: str) -> Iterator[None]:
    """Peak memory of the block into ``record``; an OOM is recorded there, not raised."""
    release_memory()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    oom = None
    try:
        yield
    except torch.OutOfMemoryError as error:
        oom = str(error).splitlines()[0]
    except RuntimeError as error:
        # Some CUDA extensions (bitsandbytes among them) report OOM as a plain RuntimeError.
        if "out of memory" not in str(error).lower():
            raise
        oom = str(error).splitlines()[0]
    record["oom"] = oom
    if device == "cuda":
        record["peak_allocated_gib"] = torch.cuda.max_memory_allocated() / GIB
        record["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / GIB
    release_memory()


def ttt_set(
    builder: PromptBuilder, task: ArcTask, config: TTTJobConfig
) -> tuple[list[EncodedExample], float]:
    """The task's TTT examples as the job builds them, and the seconds that took (the job
    pays them on its CPU for every task, before the first step)."""
    started = time.perf_counter()
    examples = training_set(
        task,
        config.train,
        builder,
        seed=derive_seed(config.seed, task.task_id),
        max_seq_len=config.model.max_seq_len,
    )
    return examples, time.perf_counter() - started


def measure_task(
    model: Any,
    builder: PromptBuilder,
    task: ArcTask,
    config: TTTJobConfig,
    ttt: tuple[list[EncodedExample], float],
    *,
    device: str,
    train_steps: int,
    new_tokens: int,
) -> dict[str, Any]:
    """Train ``train_steps`` steps on the task's longest TTT examples (``ttt``, from
    :func:`ttt_set`), then prefill and decode its largest inference batch; the full recipe's
    seconds are extrapolated from the measured rates."""
    examples, set_seconds = ttt
    lengths = [len(example.input_ids) for example in examples]
    record: dict[str, Any] = {
        "task": task.task_id,
        "gradient_checkpointing": config.model.gradient_checkpointing,
        "ttt_set_seconds": set_seconds,
        "examples": len(examples),
        "max_example_tokens": max(lengths, default=0),
        "recipe_steps": config.train.epochs * math.ceil(len(examples) / config.train.batch_size),
        "recipe_train_tokens": config.train.epochs * sum(lengths),
    }
    set_checkpointing(model, enabled=config.model.gradient_checkpointing)
    seed = derive_seed(config.seed, task.task_id)
    predictor = attach_lora(model, config.lora, seed) if examples else model
    try:
        if examples:
            record["train"] = train_phase(predictor, builder, examples, config, device, train_steps)
        record["inference"] = inference_phase(predictor, builder, task, config, device, new_tokens)
    finally:
        if examples:
            detach_lora(predictor)
    record["recipe_seconds"] = extrapolate(record)
    return record


def train_phase(
    model: Any,
    builder: PromptBuilder,
    examples: list[EncodedExample],
    config: TTTJobConfig,
    device: str,
    steps: int,
) -> dict[str, Any]:
    # The longest examples: the task's worst case for memory; time is per token.
    longest = sorted(examples, key=lambda e: len(e.input_ids), reverse=True)
    chosen = longest[: steps * config.train.batch_size]
    record: dict[str, Any] = {"steps": 0, "step_seconds": [], "step_tokens": []}
    with phase(record, device):
        try:
            trainer = AdapterTrainer(
                model,
                chosen,
                config.train,
                seed=0,
                device=device,
                pad_id=builder.tokenizer.pad_token_id,
                precision=device_precision(device),
            )
            for _ in range(min(steps, trainer.total_steps)):
                tokens = sum(len(chosen[i].input_ids) for i in trainer.batch_indices(trainer.step))
                _sync(device)
                started = time.perf_counter()
                trainer.train_step()
                _sync(device)
                record["step_seconds"].append(time.perf_counter() - started)
                record["step_tokens"].append(tokens)
                record["steps"] += 1
            # As the job does: the optimizer state goes before inference.
            trainer.release()
            del trainer
        finally:
            # After an OOM mid-step the adapter's gradients would stay allocated.
            model.zero_grad(set_to_none=True)
    # The first step pays for kernel selection and allocator warm-up; skip it if we can.
    timed = slice(1, None) if record["steps"] > 1 else slice(None)
    seconds, tokens = sum(record["step_seconds"][timed]), sum(record["step_tokens"][timed])
    record["seconds_per_token"] = seconds / tokens if tokens else None
    return record


def inference_phase(
    model: Any,
    builder: PromptBuilder,
    task: ArcTask,
    config: TTTJobConfig,
    device: str,
    new_tokens: int,
) -> dict[str, Any]:
    """Prefill and decode the recipe's largest inference batch of the task (the memory
    worst case), under the job's autocast; list every batch the recipe would run."""
    batches = recipe_batches(builder, task, config)
    prompts, _ = max(batches, key=lambda batch: _tokens(builder, batch[0]))
    record: dict[str, Any] = {
        "batch": len(prompts),
        "prompt_tokens": _tokens(builder, prompts),
        "recipe_batches": [[_tokens(builder, texts), budget] for texts, budget in batches],
    }
    steps = []
    head = model.get_output_embeddings()
    hook = head.register_forward_hook(lambda *_: steps.append(1))
    try:
        with phase(record, device), device_precision(device).autocast_context():
            timings = []
            for budget in (1, new_tokens):
                steps.clear()
                _sync(device)
                started = time.perf_counter()
                generate(model, builder, prompts, max_new_tokens=budget, device=device)
                _sync(device)
                timings.append((time.perf_counter() - started, len(steps)))
            (prefill, _), (full, forward_passes) = timings
            record["prefill_seconds"] = prefill
            record["generated_tokens"] = forward_passes
            # Decoding alone: the second run less the first (its prefill); clamped at 0
            # because on a loaded CPU the two can come out in either order.
            record["seconds_per_token"] = max(full - prefill, 0.0) / max(forward_passes - 1, 1)
    finally:
        hook.remove()
    return record


def _tokens(builder: PromptBuilder, texts: list[str]) -> int:
    return sum(len(ids) for ids in builder.tokenizer(texts, add_special_tokens=False)["input_ids"])


def recipe_batches(
    builder: PromptBuilder, task: ArcTask, config: TTTJobConfig
) -> list[tuple[list[str], int]]:
    """(prompts, token budget) of every generate call ``predict_task`` makes for the task:
    its loop without the model (same queries, prompt fitting and duplicate skipping)."""
    settings = config.inference
    rng = np.random.default_rng(derive_seed(config.seed, task.task_id, "inference"))
    calls = []
    for test_index in range(len(task.test_inputs)):
        seen: set[tuple[int, str]] = set()
        for batch in batched(queries(task, test_index, settings, rng), settings.batch_size):
            fitted = []
            for query in batch:
                prompt = fit_prompt(builder, query.episode, settings, config.model.max_seq_len)
                key = (query.group, prompt.text) if prompt else None
                if prompt is None or (settings.demonstrations == "leave_one_out" and key in seen):
                    continue
                seen.add((query.group, prompt.text))
                fitted.append(prompt)
            if fitted:
                calls.append(([p.text for p in fitted], max(p.max_new_tokens for p in fitted)))
    return calls


def extrapolate(record: dict[str, Any]) -> dict[str, float] | None:
    """Seconds of the full recipe on this task from the measured rates (None after an OOM).

    TTT: building the TTT set + seconds per trained token x every token of every epoch.
    Inference: per batch, the measured prefill rate x its prompt tokens + its token budget x
    seconds per new token.
    """
    inference = record["inference"]
    train = record.get("train")
    if inference.get("oom") or (train is not None and train.get("oom")):
        return None
    ttt = record["ttt_set_seconds"]
    if train:
        ttt += train["seconds_per_token"] * record["recipe_train_tokens"]
    prefill_rate = inference["prefill_seconds"] / inference["prompt_tokens"]
    predict = sum(
        prefill_rate * tokens + budget * inference["seconds_per_token"]
        for tokens, budget in inference["recipe_batches"]
    )
    return {"ttt": ttt, "inference": predict, "total": ttt + predict}
