"""Prediction under invertible transforms, mapped back and voted down to two attempts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ml.arc.augment import (
    Chain,
    ColorPermutation,
    GridTransform,
    NotInvertibleError,
    episode_fits,
    permute_demos,
    transform_episode,
    transform_from_name,
)
from ml.arc.configs import InferenceSettings
from ml.arc.data import ArcTask, Episode, Grid, batched
from ml.arc.formatting import PromptBuilder
from ml.arc.vote import hierarchical_vote


@dataclass(frozen=True)
class Query:
    """One prompt to run: which vote group it belongs to and how to map its answer back."""

    group: int
    transform: GridTransform
    episode: Episode


def queries(
    task: ArcTask, test_index: int, settings: InferenceSettings, rng: np.random.Generator
) -> Iterator[Query]:
    """For each transform: the plain view, then ``permutations - 1`` with shuffled demos and
    recoloured grids, so greedy decoding still gets several distinct samples to vote with."""
    base = Episode(task.train, task.test_inputs[test_index])
    for group, name in enumerate(settings.transforms):
        transform = transform_from_name(name)
        for sample in range(settings.permutations):
            episode, mapping = base, transform
            if sample:
                episode = permute_demos(base, rng)
                mapping = Chain((transform, ColorPermutation.random(rng)))
            transformed = transform_episode(episode, mapping)
            if episode_fits(transformed):
                yield Query(group, mapping, transformed)


def token_budget(builder: PromptBuilder, episode: Episode, settings: InferenceSettings) -> int:
    """New tokens allowed: a multiple of the largest demo output's length, within the cap."""
    if not settings.output_budget_factor:
        return settings.max_new_tokens
    largest = max((ex.output for ex in episode.demos), key=lambda grid: grid.size)
    length = len(
        builder.tokenizer(builder.answer_text(largest), add_special_tokens=False)["input_ids"]
    )
    return min(settings.max_new_tokens, int(settings.output_budget_factor * length) + 8)


@torch.no_grad()
def generate(
    model: Any, builder: PromptBuilder, prompts: list[str], *, max_new_tokens: int, device: str
) -> list[str]:
    """Greedy completions of ``prompts``, decoded without special tokens."""
    from transformers import GenerationConfig

    tokenizer = builder.tokenizer
    tokenizer.padding_side = "left"
    encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    footer = builder.settings.output_footer
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        use_cache=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        stop_strings=[footer] if footer else None,
    )
    model.eval()
    output = model.generate(
        input_ids=encoded["input_ids"].to(device),
        attention_mask=encoded["attention_mask"].to(device),
        generation_config=config,
        tokenizer=tokenizer,
    )
    return tokenizer.batch_decode(
        output[:, encoded["input_ids"].shape[1] :], skip_special_tokens=True
    )


def predict_task(
    model: Any,
    builder: PromptBuilder,
    task: ArcTask,
    settings: InferenceSettings,
    *,
    seed: int,
    device: str,
    max_seq_len: int,
    should_stop: Callable[[], bool] = lambda: False,
) -> list[list[Grid]] | None:
    """Up to two ranked guesses per test input; None if ``should_stop`` interrupted."""
    rng = np.random.default_rng(seed)
    guesses = []
    for test_index in range(len(task.test_inputs)):
        groups: list[list[Grid]] = [[] for _ in settings.transforms]
        for batch in batched(queries(task, test_index, settings, rng), settings.batch_size):
            if should_stop():
                return None
            prompts = [builder.prompt(query.episode) for query in batch]
            runnable = [
                (query, prompt)
                for query, prompt in zip(batch, prompts, strict=True)
                if len(builder.tokenizer(prompt, add_special_tokens=False)["input_ids"])
                < max_seq_len
            ]
            if not runnable:
                continue
            budget = max(token_budget(builder, query.episode, settings) for query, _ in runnable)
            texts = generate(
                model, builder, [p for _, p in runnable], max_new_tokens=budget, device=device
            )
            for (query, _), text in zip(runnable, texts, strict=True):
                grid = builder.parse(text)
                if grid is None:
                    continue
                try:
                    groups[query.group].append(query.transform.invert(grid))
                except NotInvertibleError:
                    continue
        guesses.append(hierarchical_vote(groups, settings.top_k_per_transform)[:2])
    return guesses


def as_attempts(guesses: list[list[Grid]]) -> list[dict[str, list[list[int]]]]:
    """Guesses in the submission layout; a missing second guess repeats the first."""
    entries = []
    for ranked in guesses:
        entry: dict[str, list[list[int]]] = {}
        if ranked:
            entry["attempt_1"] = ranked[0].tolist()
            entry["attempt_2"] = ranked[min(1, len(ranked) - 1)].tolist()
        entries.append(entry)
    return entries
