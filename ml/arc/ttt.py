"""Test-time training of one task's LoRA adapter: a resumable, step-indexed training loop."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint

from ml.arc.configs import EarlyStopping, TrainSettings
from ml.arc.data import ArcTask, Episode, batched
from ml.arc.formatting import PromptBuilder
from ml.arc.ttt_data import episode_key, ttt_episodes
from ml.common.precision import Precision, device_precision
from ml.common.seeding import derive_seed

IGNORE_INDEX = -100
LOSS_CHUNK_TOKENS = 1024


@dataclass(frozen=True)
class EncodedExample:
    input_ids: list[int]
    labels: list[int]
    """Token ids where the loss applies, IGNORE_INDEX elsewhere."""


def encode(builder: PromptBuilder, episode: Episode, *, loss_on_demos: bool) -> EncodedExample:
    """Tokenize a rendered episode; a token carries loss if it overlaps a loss span."""
    rendered = builder.render(episode, loss_on_demos=loss_on_demos)
    encoding = builder.tokenizer(
        rendered.text, add_special_tokens=False, return_offsets_mapping=True
    )
    ids = list(encoding["input_ids"])
    labels = [
        token
        if any(start < end and lo < end and start < hi for lo, hi in rendered.loss_spans)
        else IGNORE_INDEX
        for token, (start, end) in zip(ids, encoding["offset_mapping"], strict=True)
    ]
    return EncodedExample(ids, labels)


def training_set(
    task: ArcTask,
    settings: TrainSettings,
    builder: PromptBuilder,
    *,
    seed: int,
    max_seq_len: int,
) -> list[EncodedExample]:
    """The task's TTT examples, tokenized; those longer than ``max_seq_len`` are dropped."""
    loss_on_demos = settings.loss_on == "all_outputs"
    encoded: dict[bytes, EncodedExample] = {}

    def encoded_episode(episode: Episode) -> EncodedExample:
        # Memoised: with the length filter before the cap every episode is encoded to be
        # measured, and the kept ones must not be tokenized twice.
        key = episode_key(episode)
        if key not in encoded:
            encoded[key] = encode(builder, episode, loss_on_demos=loss_on_demos)
        return encoded[key]

    episodes = ttt_episodes(
        task,
        settings,
        np.random.default_rng(seed),
        fits=lambda episode: len(encoded_episode(episode).input_ids) <= max_seq_len,
    )
    examples = (encoded_episode(episode) for episode in episodes)
    return [example for example in examples if len(example.input_ids) <= max_seq_len]


@dataclass
class PlateauStopper:
    """Signals a stop when the windowed mean loss has not improved for ``patience`` windows."""

    settings: EarlyStopping
    best: float | None = None
    bad_windows: int = 0
    window: list[float] = field(default_factory=list)

    def update(self, loss: float) -> bool:
        if not self.settings.enabled:
            return False
        self.window.append(loss)
        if len(self.window) < self.settings.window_steps:
            return False
        mean = sum(self.window) / len(self.window)
        self.window = []
        if self.best is None or mean < self.best * (1 - self.settings.min_delta):
            self.best, self.bad_windows = mean, 0
        else:
            self.bad_windows += 1
        return self.bad_windows >= self.settings.patience


def shortest_half(examples: Sequence[EncodedExample]) -> list[EncodedExample]:
    """The shorter half of ``examples`` (at least one), in their order: a retry after running
    out of memory trains on fewer and shorter sequences, whose peak is lower."""
    keep = max(1, len(examples) // 2)
    by_length = sorted(range(len(examples)), key=lambda i: (len(examples[i].input_ids), i))
    return [examples[i] for i in sorted(by_length[:keep])]


def chunked_lm_loss(
    model: Any, batch: dict[str, torch.Tensor], *, chunk_tokens: int = LOSS_CHUNK_TOKENS
) -> torch.Tensor:
    """Summed next-token cross-entropy over the labelled positions of ``batch``.

    The output head runs on the labelled positions only, ``chunk_tokens`` at a time, and each
    chunk is recomputed in the backward pass instead of kept: a (tokens x vocab) fp32 logits
    tensor is never materialised (at 8k tokens and Llama-3's 128k vocabulary it would be
    ~4 GiB, twice that with its gradient).
    """
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = causal_lm.base_model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
    ).last_hidden_state
    targets = batch["labels"][:, 1:]
    scored = targets != IGNORE_INDEX
    hidden, targets = hidden[:, :-1][scored], targets[scored]
    head = causal_lm.get_output_embeddings()

    def chunk_loss(states: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = head(states).float()
        return torch.nn.functional.cross_entropy(logits, labels, reduction="sum")

    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, len(targets), chunk_tokens):
        end = start + chunk_tokens
        total = total + checkpoint(
            chunk_loss, hidden[start:end], targets[start:end], use_reentrant=False
        )
    return total


@dataclass(frozen=True)
class TrainOutcome:
    steps: int
    total_steps: int
    losses: list[float]
    stopped_early: bool
    interrupted: bool
    """True when ``should_stop`` ended training before it was done."""
    out_of_time: bool = False
    """True when the time limit ended training; the adapter is still used."""


class AdapterTrainer:
    """AdamW + cosine schedule over a fixed, seed-determined order of batches.

    The batch of step ``k`` depends only on the seed and ``k``, so a task restarted from its
    beginning (a resumed run does not keep mid-task state) trains exactly as before.
    ``max_steps`` cuts the schedule short when a time budget allows no more.
    """

    def __init__(
        self,
        model: Any,
        examples: Sequence[EncodedExample],
        settings: TrainSettings,
        *,
        seed: int,
        device: str,
        pad_id: int,
        precision: Precision | None = None,
        max_steps: int | None = None,
    ) -> None:
        from transformers import get_cosine_schedule_with_warmup

        if not examples:
            raise ValueError("no training examples")
        self.model, self.examples, self.settings = model, list(examples), settings
        self.seed, self.device, self.pad_id = seed, device, pad_id
        self.precision = precision or device_precision(device)
        self.steps_per_epoch = math.ceil(len(self.examples) / settings.batch_size)
        self.total_steps = settings.epochs * self.steps_per_epoch
        if max_steps is not None:
            self.total_steps = max(1, min(self.total_steps, max_steps))
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            params, lr=settings.learning_rate, weight_decay=settings.weight_decay
        )
        self.scheduler = get_cosine_schedule_with_warmup(
            self.optimizer, round(settings.warmup_ratio * self.total_steps), self.total_steps
        )
        self.scaler = torch.amp.GradScaler(
            self.precision.device_type, enabled=self.precision.grad_scaler
        )
        self.step = 0
        self.losses: list[float] = []
        self.stopper = PlateauStopper(settings.early_stopping)
        self.stopped_early = False

    def batch_indices(self, step: int) -> list[int]:
        epoch, position = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng(derive_seed(self.seed, "epoch", epoch)).permutation(
            len(self.examples)
        )
        size = self.settings.batch_size
        return order[position * size : (position + 1) * size].tolist()

    def _collate(self, indices: list[int]) -> dict[str, torch.Tensor]:
        batch = [self.examples[i] for i in indices]
        width = max(len(example.input_ids) for example in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, example in enumerate(batch):
            n = len(example.input_ids)
            ids[row, :n] = torch.tensor(example.input_ids)
            labels[row, :n] = torch.tensor(example.labels)
            mask[row, :n] = 1
        return {
            "input_ids": ids.to(self.device),
            "labels": labels.to(self.device),
            "attention_mask": mask.to(self.device),
        }

    def train_step(self) -> float:
        """One optimizer step; the loss is the mean over every loss token of the batch."""
        self.model.train()
        indices = self.batch_indices(self.step)
        micro_batches = list(batched(indices, self.settings.micro_batch_size))
        tokens = [sum(_loss_tokens(self.examples[i]) for i in micro) for micro in micro_batches]
        total_tokens = max(sum(tokens), 1)
        loss_sum = 0.0
        for micro, n_tokens in zip(micro_batches, tokens, strict=True):
            if n_tokens == 0:
                continue
            with self.precision.autocast_context():
                loss = chunked_lm_loss(self.model, self._collate(micro)) / total_tokens
            self.scaler.scale(loss).backward()
            loss_sum += float(loss.detach())
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.losses.append(loss_sum)
        self.stopped_early = self.stopper.update(loss_sum)
        return loss_sum

    @property
    def done(self) -> bool:
        return self.step >= self.total_steps or self.stopped_early

    def run(
        self,
        *,
        should_stop: Callable[[], bool] = lambda: False,
        out_of_time: Callable[[], bool] = lambda: False,
        on_step: Callable[[int, float], None] | None = None,
    ) -> TrainOutcome:
        """Train to the end, an early stop, a stop request or the end of the time budget."""
        while not self.done:
            if should_stop():
                return self._outcome(interrupted=True)
            if self.step and out_of_time():
                return self._outcome(interrupted=False, out_of_time=True)
            loss = self.train_step()
            if on_step is not None:
                on_step(self.step, loss)
        return self._outcome(interrupted=False)

    def _outcome(self, *, interrupted: bool, out_of_time: bool = False) -> TrainOutcome:
        return TrainOutcome(
            self.step,
            self.total_steps,
            list(self.losses),
            self.stopped_early,
            interrupted,
            out_of_time,
        )

    def release(self) -> None:
        """Drop the optimizer state (two fp32 copies of the adapter) before inference."""
        self.optimizer.state.clear()
        del self.optimizer, self.scheduler, self.scaler


def _loss_tokens(example: EncodedExample) -> int:
    # The model predicts token i from the tokens before it, so label 0 is never scored.
    return sum(label != IGNORE_INDEX for label in example.labels[1:])
