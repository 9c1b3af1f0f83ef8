from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ml.arc.augment import (
    ColorPermutation,
    Dihedral,
    NotInvertibleError,
    permute_demos,
    transform_episode,
    transform_from_name,
)
from ml.arc.configs import DIHEDRAL_TRANSFORMS, RECIPE_TTT_TRANSFORMS
from ml.arc.data import Episode, Example

# A loaded, shared CPU must not turn slow examples into failures.
no_deadline = settings(deadline=None)
grids = st.tuples(st.integers(1, 30), st.integers(1, 30)).flatmap(
    lambda shape: arrays(np.uint8, shape, elements=st.integers(0, 9))
)
names = st.sampled_from(sorted(set(RECIPE_TTT_TRANSFORMS + DIHEDRAL_TRANSFORMS)))


@no_deadline
@given(grid=grids, name=names)
def test_every_named_transform_inverts(grid: np.ndarray, name: str) -> None:
    transform = transform_from_name(name)
    assert np.array_equal(transform.invert(transform.apply(grid)), grid)


@no_deadline
@given(grid=grids, seed=st.integers(0, 2**32 - 1))
def test_colour_permutation_inverts_and_keeps_black(grid: np.ndarray, seed: int) -> None:
    permutation = ColorPermutation.random(np.random.default_rng(seed))
    recoloured = permutation.apply(grid)
    assert np.array_equal(recoloured == 0, grid == 0)
    assert np.array_equal(permutation.invert(recoloured), grid)


@no_deadline
@given(grid=grids, first=names, second=names, seed=st.integers(0, 2**32 - 1))
def test_chains_with_colours_invert(grid, first, second, seed) -> None:
    colours = ColorPermutation.random(np.random.default_rng(seed)).name
    transform = transform_from_name(f"{first}+{colours}+{second}")
    assert np.array_equal(transform.invert(transform.apply(grid)), grid)


def test_dihedral_group_has_eight_distinct_elements() -> None:
    grid = np.arange(6, dtype=np.uint8).reshape(2, 3)
    images = {
        Dihedral(name).apply(grid).tobytes() + bytes(Dihedral(name).apply(grid).shape)
        for name in DIHEDRAL_TRANSFORMS
    }
    assert len(images) == 8


@pytest.mark.parametrize(
    ("name", "grid"),
    [
        ("upscale2", [[1, 2], [3, 4]]),
        ("upscale2", [[1, 1, 1]]),
        ("repeat_w2", [[1, 2, 3]]),
        ("repeat2", [[1, 2], [1, 3]]),
        ("reflect_lr", [[1, 2]]),
        ("reflect_ud_rev", [[1], [2]]),
    ],
)
def test_invert_rejects_grids_outside_the_image(name: str, grid) -> None:
    with pytest.raises(NotInvertibleError):
        transform_from_name(name).invert(np.array(grid, dtype=np.uint8))


def test_named_transforms_match_the_recipe_semantics() -> None:
    grid = np.array([[1, 2]], dtype=np.uint8)
    assert transform_from_name("upscale_h2").apply(grid).tolist() == [[1, 2], [1, 2]]
    assert transform_from_name("upscale_w2").apply(grid).tolist() == [[1, 1, 2, 2]]
    assert transform_from_name("repeat_w2").apply(grid).tolist() == [[1, 2, 1, 2]]
    assert transform_from_name("reflect_lr").apply(grid).tolist() == [[1, 2, 2, 1]]
    assert transform_from_name("reflect_lr_rev").apply(grid).tolist() == [[2, 1, 1, 2]]
    assert transform_from_name("rot90").apply(grid).tolist() == [[2], [1]]


@pytest.mark.parametrize("name", ["rot45", "upscale1", "colors1234", "", "flip"])
def test_unknown_names_are_rejected(name: str) -> None:
    with pytest.raises(ValueError):
        transform_from_name(name)


def test_episode_transform_and_demo_order() -> None:
    demos = tuple(
        Example(np.full((1, 2), i, np.uint8), np.full((2, 1), i, np.uint8)) for i in range(5)
    )
    episode = Episode(demos, np.zeros((1, 2), np.uint8), np.zeros((2, 1), np.uint8))
    flipped = transform_episode(episode, transform_from_name("transpose"))
    assert all(ex.input.shape == (2, 1) and ex.output.shape == (1, 2) for ex in flipped.demos)
    assert flipped.answer.shape == (1, 2)
    shuffled = permute_demos(episode, np.random.default_rng(3))
    assert sorted(int(ex.input[0, 0]) for ex in shuffled.demos) == list(range(5))
    assert all(np.array_equal(ex.input.T, ex.output) for ex in shuffled.demos)
    assert [int(ex.input[0, 0]) for ex in shuffled.demos] != list(range(5))
