"""One task end to end: train its adapter (unless TTT is off), predict, remove the adapter.

Running out of GPU memory does not end the run: the task is tried again one level down,
:data:`LEVELS` ``full`` -> ``reduced`` (the shorter half of the examples, one per forward
pass) -> ``none`` (the base model predicts, one prompt at a time). What happened is recorded
in the task's stats (``ttt``: the level that answered, ``oom``: the tries that ran out).
Prediction first halves its batch (``inference_oom_batches``) before a level is given up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ml.arc.configs import InferenceSettings, TTTJobConfig
from ml.arc.data import ArcTask, Grid
from ml.arc.formatting import PromptBuilder
from ml.arc.inference import predict_task
from ml.arc.modeling import attach_lora, detach_lora
from ml.arc.ttt import AdapterTrainer, EncodedExample, shortest_half, training_set
from ml.common.precision import Precision, device_precision, release_cached_memory
from ml.common.seeding import derive_seed

FULL, REDUCED, NONE = "full", "reduced", "none"
LEVELS = (FULL, REDUCED, NONE)
FAILED = "failed"
"""The ``ttt`` of a task whose every level ran out of memory: it gets no guesses."""


@dataclass(frozen=True)
class TaskHooks:
    """How a caller (the job, a benchmark) follows and interrupts the work on a task."""

    should_stop: Callable[[], bool] = lambda: False
    on_step: Callable[[int, float], None] | None = None
    keep_adapter: Callable[[Any], None] | None = None
    """Called with the trained adapter model before it is removed."""


@dataclass(frozen=True)
class TaskPlan:
    """How much one task may do: the level to start at and its time limits."""

    level: int = 0
    max_steps: int | None = None
    """Cap on optimizer steps (from the time budget); None: the config's schedule."""
    train_until: float | None = None
    """``time.monotonic()`` past which training stops and prediction begins."""


@dataclass(frozen=True)
class TaskOutcome:
    guesses: list[list[Grid]] | None
    """Up to two ranked guesses per test input; None if a stop request interrupted."""
    stats: dict[str, Any]


def solve_task(
    model: Any,
    builder: PromptBuilder,
    task: ArcTask,
    config: TTTJobConfig,
    *,
    device: str,
    plan: TaskPlan = TaskPlan(),
    precision: Precision | None = None,
    hooks: TaskHooks = TaskHooks(),
) -> TaskOutcome:
    """Solve ``task`` from ``plan.level`` down, one level further each time memory runs out."""
    precision = precision or device_precision(device)
    ran_out: list[dict[str, str]] = []
    levels = LEVELS[plan.level :] if config.train.enabled else (NONE,)
    for level in levels:
        try:
            outcome = _try(model, builder, task, config, level, plan, device, precision, hooks)
        except torch.OutOfMemoryError as exc:
            ran_out.append({"level": level, "error": str(exc).splitlines()[0][:200]})
        else:
            outcome.stats.update(ttt=level, oom=ran_out)
            return outcome
        # Outside the except block: the exception's frames no longer pin the tensors.
        release_cached_memory()
    return TaskOutcome([[] for _ in task.test_inputs], {"ttt": FAILED, "oom": ran_out})


def _try(
    model: Any,
    builder: PromptBuilder,
    task: ArcTask,
    config: TTTJobConfig,
    level: str,
    plan: TaskPlan,
    device: str,
    precision: Precision,
    hooks: TaskHooks,
) -> TaskOutcome:
    started = time.monotonic()
    seed = derive_seed(config.seed, task.task_id)
    examples = _examples(builder, task, config, level, seed)
    stats: dict[str, Any] = {"examples": len(examples), "steps": 0}
    # A task with a single demonstration has no leave-one-out examples: no adapter then.
    predictor = attach_lora(model, config.lora, seed) if examples else model
    inference = config.inference
    if level == NONE and config.train.enabled:  # the fallback, not a run without TTT
        inference = inference.model_copy(update={"batch_size": 1})
    try:
        if examples:
            train = config.train
            if level == REDUCED:
                train = train.model_copy(update={"micro_batch_size": 1})
            trainer = AdapterTrainer(
                predictor,
                examples,
                train,
                seed=seed,
                device=device,
                pad_id=builder.tokenizer.pad_token_id,
                precision=precision,
                max_steps=plan.max_steps,
            )
            train_until = plan.train_until
            outcome = trainer.run(
                should_stop=hooks.should_stop,
                out_of_time=lambda: train_until is not None and time.monotonic() >= train_until,
                on_step=hooks.on_step,
            )
            # The optimizer's fp32 moments are twice the adapter: gone before generation.
            trainer.release()
            if outcome.interrupted:
                return TaskOutcome(None, stats)
            stats.update(
                steps=outcome.steps,
                total_steps=outcome.total_steps,
                final_loss=outcome.losses[-1] if outcome.losses else None,
                stopped_early=outcome.stopped_early,
                out_of_time=outcome.out_of_time,
                train_seconds=round(time.monotonic() - started, 3),
            )
        guesses = _predict_within_memory(
            predictor, builder, task, config, inference, device, precision, hooks, stats
        )
        if guesses is None:
            return TaskOutcome(None, stats)
        if examples and hooks.keep_adapter is not None:
            hooks.keep_adapter(predictor)
    finally:
        if examples:
            detach_lora(predictor)
    stats["seconds"] = round(time.monotonic() - started, 3)
    return TaskOutcome(guesses, stats)


def _predict_within_memory(
    predictor: Any,
    builder: PromptBuilder,
    task: ArcTask,
    config: TTTJobConfig,
    inference: InferenceSettings,
    device: str,
    precision: Precision,
    hooks: TaskHooks,
    stats: dict[str, Any],
) -> list[list[Grid]] | None:
    """Predict, halving the inference batch each time memory runs out: the KV cache of a
    batch of long prompts is what overflows (about 11 GiB for 8 prompts of 8k tokens on the
    8B), and the adapter just trained is kept, where a level down would train again. Out of
    memory at batch 1 is the caller's to handle."""
    batch = inference.batch_size
    while True:
        try:
            with precision.autocast_context():
                return predict_task(
                    predictor,
                    builder,
                    task,
                    inference.model_copy(update={"batch_size": batch}),
                    seed=derive_seed(config.seed, task.task_id, "inference"),
                    device=device,
                    max_seq_len=config.model.max_seq_len,
                    should_stop=hooks.should_stop,
                )
        except torch.OutOfMemoryError:
            if batch == 1:
                raise
            stats.setdefault("inference_oom_batches", []).append(batch)
            release_cached_memory()
            batch //= 2


def _examples(
    builder: PromptBuilder, task: ArcTask, config: TTTJobConfig, level: str, seed: int
) -> list[EncodedExample]:
    if level == NONE or not config.train.enabled:
        return []
    examples = training_set(
        task, config.train, builder, seed=seed, max_seq_len=config.model.max_seq_len
    )
    return shortest_half(examples) if level == REDUCED else examples
