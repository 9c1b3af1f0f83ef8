from __future__ import annotations

import numpy as np

from ml.arc.vote import hierarchical_vote


def g(value: int, width: int = 1) -> np.ndarray:
    return np.full((1, width), value, dtype=np.uint8)


def ranked(groups, top_k: int = 3) -> list[list[list[int]]]:
    return [grid.tolist() for grid in hierarchical_vote(groups, top_k)]


def test_agreement_across_transforms_beats_a_loud_single_transform() -> None:
    groups = [[g(1)] * 5, [g(2), g(2), g(1)], [g(2)], [g(2)]]
    assert ranked(groups, top_k=1) == [[[2]], [[1]]]


def test_total_votes_break_ties_between_equally_supported_candidates() -> None:
    groups = [[g(1), g(2), g(2)], [g(1), g(2)]]
    assert ranked(groups) == [[[2]], [[1]]]


def test_top_k_limits_what_a_transform_puts_forward() -> None:
    groups = [[g(1), g(1), g(2), g(3)], [g(3)], [g(3)]]
    assert ranked(groups, top_k=1) == [[[3]], [[1]]]
    assert ranked(groups, top_k=3)[0] == [[3]]


def test_shape_is_part_of_identity_and_order_is_deterministic() -> None:
    # Same bytes, different shapes: two different candidates.
    flat, tall = np.zeros((1, 2), np.uint8), np.zeros((2, 1), np.uint8)
    assert ranked([[flat], [tall]]) == [[[0, 0]], [[0], [0]]]


def test_no_guesses() -> None:
    assert hierarchical_vote([[], []]) == []
