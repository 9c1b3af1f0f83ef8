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


def base_episodes(task: ArcTask, test_index: int, settings: InferenceSettings) -> list[Episode]:
    """The test input with every demonstration, or (leave-one-out) once per demonstration
    left out, as MARC prompts its TTT adapters: the adapter was trained on prompts one
    demonstration short. A single demonstration is kept (MARC would prompt with none)."""
    demos, query = task.train, task.test_inputs[test_index]
    if settings.demonstrations == "all" or len(demos) < 2:
        return [Episode(demos, query)]
    return [Episode(demos[:i] + demos[i + 1 :], query) for i in range(len(demos))]


def queries(
    task: ArcTask, test_index: int, settings: InferenceSettings, rng: np.random.Generator
) -> Iterator[Query]:
    """For each transform and base episode: the plain view, then ``permutations - 1`` with
    shuffled demos and recoloured grids, so greedy decoding still gets several distinct
    samples to vote with."""
    bases = base_episodes(task, test_index, settings)
    for group, name in enumerate(settings.transforms):
        transform = transform_from_name(name)
        for base in bases:
            for sample in range(settings.permutations):
                episode, mapping = base, transform
                if sample:
                    episode = permute_demos(base, rng)
                    mapping = Chain((transform, ColorPermutation.random(rng)))
                transformed = transform_episode(episode, mapping)
                if episode_fits(transformed):
                    yield Query(group, mapping, transformed)


@dataclass(frozen=True)
class FittedPrompt:
    """A query's episode as prompted (demonstrations dropped if it was too long)."""

    episode: Episode
    text: str
    max_new_tokens: int


def fit_prompt(
    builder: PromptBuilder, episode: Episode, settings: InferenceSettings, max_seq_len: int
) -> FittedPrompt | None:
    """The prompt for ``episode`` if it fits ``max_seq_len``; None if it does not.

    With ``long_prompts: drop_demonstrations`` (MARC), demonstrations are dropped, the
    largest first, until the prompt plus an answer as long as the query grid fits (MARC
    counts the prompt and an answer); the answer may then use what is left of the window.
    At least one demonstration stays: without any, the task is not defined.
    """
    text, length = _prompt_length(builder, episode)
    if settings.long_prompts == "skip":
        if length >= max_seq_len:
            return None
        return FittedPrompt(episode, text, token_budget(builder, episode, settings))
    answer = _token_count(builder, builder.answer_text(episode.query))
    while length + answer >= max_seq_len:
        if len(episode.demos) < 2:
            return None
        episode = _drop_largest_demo(episode)
        text, length = _prompt_length(builder, episode)
    budget = min(token_budget(builder, episode, settings), max_seq_len - length)
    return FittedPrompt(episode, text, budget)


def _drop_largest_demo(episode: Episode) -> Episode:
    # Cells stand in for tokens: every grid format spends the same tokens on each cell.
    sizes = [example.input.size + example.output.size for example in episode.demos]
    largest = sizes.index(max(sizes))
    demos = episode.demos[:largest] + episode.demos[largest + 1 :]
    return Episode(demos, episode.query, episode.answer)


def _prompt_length(builder: PromptBuilder, episode: Episode) -> tuple[str, int]:
    text = builder.prompt(episode)
    return text, _token_count(builder, text)


def _token_count(builder: PromptBuilder, text: str) -> int:
    return len(builder.tokenizer(text, add_special_tokens=False)["input_ids"])


def token_budget(builder: PromptBuilder, episode: Episode, settings: InferenceSettings) -> int:
    """New tokens allowed: a multiple of the largest demo output's length, within the cap."""
    if not settings.output_budget_factor:
        return settings.max_new_tokens
    largest = max((ex.output for ex in episode.demos), key=lambda grid: grid.size)
    length = _token_count(builder, builder.answer_text(largest))
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
        # Leave-one-out prompts can coincide (after dropping demonstrations, or in a task with
        # repeated demonstrations): like MARC, each distinct prompt votes once per view.
        seen: set[tuple[int, str]] = set()
        for batch in batched(queries(task, test_index, settings, rng), settings.batch_size):
            if should_stop():
                return None
            runnable: list[tuple[Query, FittedPrompt]] = []
            for query in batch:
                fitted = fit_prompt(builder, query.episode, settings, max_seq_len)
                if fitted is None:
                    continue
                if settings.demonstrations == "leave_one_out":
                    if (query.group, fitted.text) in seen:
                        continue
                    seen.add((query.group, fitted.text))
                runnable.append((query, fitted))
            if not runnable:
                continue
            budget = max(fitted.max_new_tokens for _, fitted in runnable)
            texts = generate(
                model,
                builder,
                [fitted.text for _, fitted in runnable],
                max_new_tokens=budget,
                device=device,
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
