"""One task end to end: train its adapter (unless TTT is off), predict, remove the adapter."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ml.arc.configs import TTTJobConfig
from ml.arc.data import ArcTask, Grid
from ml.arc.formatting import PromptBuilder
from ml.arc.inference import predict_task
from ml.arc.modeling import attach_lora, detach_lora
from ml.arc.ttt import AdapterTrainer, training_set
from ml.common.seeding import derive_seed

PHASE_TRAIN = "train"
PHASE_PREDICT = "predict"


@dataclass(frozen=True)
class TaskHooks:
    """How a caller (the job, a benchmark) follows and interrupts the work on a task."""

    should_stop: Callable[[], bool] = lambda: False
    checkpoint: Callable[[AdapterTrainer, str], None] | None = None
    """Save the trainer's state; called with the phase to resume in."""
    on_step: Callable[[int, float], None] | None = None
    keep_adapter: Callable[[Any], None] | None = None
    """Called with the trained adapter model before it is removed."""


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
    saved: dict[str, Any] | None = None,
    saved_phase: str = PHASE_TRAIN,
    hooks: TaskHooks = TaskHooks(),
) -> TaskOutcome:
    """Solve ``task``; ``saved`` (a trainer state dict) resumes it in ``saved_phase``."""
    started = time.monotonic()
    seed = derive_seed(config.seed, task.task_id)
    examples = []
    if config.train.enabled:
        examples = training_set(
            task, config.train, builder, seed=seed, max_seq_len=config.model.max_seq_len
        )
    stats: dict[str, Any] = {"examples": len(examples), "steps": 0}
    # A task with a single demonstration has no leave-one-out examples: no adapter then.
    predictor = attach_lora(model, config.lora, seed) if examples else model
    try:
        if examples:
            trainer = AdapterTrainer(
                predictor,
                examples,
                config.train,
                seed=seed,
                device=device,
                pad_id=builder.tokenizer.pad_token_id,
            )
            if saved is not None:
                trainer.load_state_dict(saved)
            if saved_phase == PHASE_TRAIN and not _train(trainer, config, hooks):
                return TaskOutcome(None, stats)
            stats.update(
                steps=trainer.step,
                total_steps=trainer.total_steps,
                final_loss=trainer.losses[-1] if trainer.losses else None,
                stopped_early=trainer.stopped_early,
                train_seconds=round(time.monotonic() - started, 3),
            )
        guesses = predict_task(
            predictor,
            builder,
            task,
            config.inference,
            seed=derive_seed(config.seed, task.task_id, "inference"),
            device=device,
            max_seq_len=config.model.max_seq_len,
            should_stop=hooks.should_stop,
        )
        if guesses is None:
            if examples and hooks.checkpoint is not None:
                hooks.checkpoint(trainer, PHASE_PREDICT)
            return TaskOutcome(None, stats)
        if examples and hooks.keep_adapter is not None:
            hooks.keep_adapter(predictor)
    finally:
        if examples:
            detach_lora(predictor)
    stats["seconds"] = round(time.monotonic() - started, 3)
    return TaskOutcome(guesses, stats)


def _train(trainer: AdapterTrainer, config: TTTJobConfig, hooks: TaskHooks) -> bool:
    """Run training to its end; False if a stop request interrupted it (state saved)."""
    checkpoint = hooks.checkpoint
    outcome = trainer.run(
        should_stop=hooks.should_stop,
        on_checkpoint=(lambda: checkpoint(trainer, PHASE_TRAIN)) if checkpoint else None,
        on_step=hooks.on_step,
    )
    if outcome.interrupted:
        if checkpoint is not None:
            checkpoint(trainer, PHASE_TRAIN)
        return False
    if checkpoint is not None and config.train.checkpoint_every_steps:
        # Training is the expensive part: do not redo it if prediction is interrupted.
        checkpoint(trainer, PHASE_PREDICT)
    return True
