"""Hierarchical voting over predictions made under different transforms."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from ml.arc.data import Grid


def _key(grid: Grid) -> tuple[tuple[int, ...], bytes]:
    return tuple(grid.shape), grid.tobytes()


def hierarchical_vote(groups: Sequence[Sequence[Grid]], top_k: int = 3) -> list[Grid]:
    """Distinct candidates, best first.

    ``groups`` holds the (inverse-mapped) guesses made under each transform. Within a group
    guesses are ranked by count and the ``top_k`` go forward; across groups a candidate ranks
    by how many groups put it forward, then by its total count, then by first appearance, so
    the result does not depend on dict or hash order.
    """
    first_seen: dict[tuple[tuple[int, ...], bytes], int] = {}
    grids: dict[tuple[tuple[int, ...], bytes], Grid] = {}
    groups_for: Counter[tuple[tuple[int, ...], bytes]] = Counter()
    total: Counter[tuple[tuple[int, ...], bytes]] = Counter()
    for group in groups:
        counts: Counter[tuple[tuple[int, ...], bytes]] = Counter()
        for grid in group:
            key = _key(grid)
            counts[key] += 1
            grids.setdefault(key, grid)
            first_seen.setdefault(key, len(first_seen))
        ranked = sorted(counts, key=lambda k: (-counts[k], first_seen[k]))
        for key in ranked[:top_k]:
            groups_for[key] += 1
            total[key] += counts[key]
    order = sorted(groups_for, key=lambda k: (-groups_for[k], -total[k], first_seen[k]))
    return [grids[key] for key in order]
