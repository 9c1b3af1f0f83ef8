"""The per-task TTT training set: leave-out episodes from the demonstrations, augmented."""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations

import numpy as np

from ml.arc.augment import (
    ColorPermutation,
    GridTransform,
    episode_fits,
    permute_demos,
    transform_episode,
    transforms_from_names,
)
from ml.arc.configs import TrainSettings
from ml.arc.data import ArcTask, Episode


def leave_out_episodes(task: ArcTask, n_out: int, *, min_kept: int = 1) -> list[Episode]:
    """Each demonstration in turn becomes the query, with ``n_out - 1`` more left out and at
    least ``min_kept`` kept (MARC keeps none when that is all there is: ``min_kept=0``)."""
    demos = task.train
    if len(demos) - n_out < min_kept:
        return []
    episodes = []
    for held in range(len(demos)):
        others = [i for i in range(len(demos)) if i != held]
        for dropped in combinations(others, n_out - 1):
            kept = tuple(demos[i] for i in others if i not in dropped)
            episodes.append(Episode(kept, demos[held].input, demos[held].output))
    return episodes


def ttt_episodes(
    task: ArcTask,
    settings: TrainSettings,
    rng: np.random.Generator,
    *,
    fits: Callable[[Episode], bool] | None = None,
) -> list[Episode]:
    """The recipe's TTT set: leave-1-out (topped up with leave-2-out), augmented, capped.

    With ``length_filter: before_cap`` (MARC), the episodes ``fits`` rejects (too long) are
    dropped before the cap, so a task with long prompts still gets up to ``max_examples``.
    """
    transforms = transforms_from_names(settings.transforms)
    min_kept = 0 if settings.demo_free_episodes else 1
    keep = fits if fits is not None and settings.length_filter == "before_cap" else None

    def augmented(n_out: int) -> list[Episode]:
        base = leave_out_episodes(task, n_out, min_kept=min_kept)
        episodes = _augment(base, transforms, settings.color_permutations, rng)
        return episodes if keep is None else [episode for episode in episodes if keep(episode)]

    pool = augmented(1)
    if len(pool) < settings.max_examples:
        pool = _unique(pool + augmented(2)[: settings.max_examples - len(pool)])
    if len(pool) > settings.max_examples:
        keep_at = rng.permutation(len(pool))[: settings.max_examples]
        pool = [pool[i] for i in sorted(keep_at)]
    return pool


def _augment(
    base: list[Episode],
    transforms: list[GridTransform],
    color_permutations: int,
    rng: np.random.Generator,
) -> list[Episode]:
    episodes = list(base)
    for transform in transforms:
        for episode in base:
            augmented = transform_episode(episode, transform)
            # Upscales and repeats can push a grid past ARC's 30 x 30 limit.
            if episode_fits(augmented):
                episodes.append(augmented)
    episodes = _unique(episodes)
    recoloured = [
        permute_demos(transform_episode(episode, ColorPermutation.random(rng)), rng)
        for _ in range(color_permutations)
        for episode in episodes
    ]
    return _unique(episodes + recoloured)


def episode_key(episode: Episode) -> bytes:
    return b"|".join(bytes(grid.shape) + grid.tobytes() for grid in episode.grids())


def _unique(episodes: list[Episode]) -> list[Episode]:
    seen: set[bytes] = set()
    unique = []
    for episode in episodes:
        key = episode_key(episode)
        if key not in seen:
            seen.add(key)
            unique.append(episode)
    return unique
