"""Invertible grid transforms (dihedral group, colour permutations, upscaling, repeats).

Every transform maps a grid to a grid and has ``invert``; ``invert`` raises
:class:`NotInvertibleError` for a grid that no input could have produced (a model's guess in
transformed space can be such a grid), so a bad guess is dropped instead of mis-mapped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ml.arc.data import Episode, Example, Grid, fits


class NotInvertibleError(ValueError):
    """The grid is not in the image of the transform."""


class GridTransform(Protocol):
    @property
    def name(self) -> str: ...

    def apply(self, grid: Grid) -> Grid: ...

    def invert(self, grid: Grid) -> Grid: ...


_DIHEDRAL: dict[str, Callable[[Grid], Grid]] = {
    "identity": lambda g: g,
    "rot90": lambda g: np.rot90(g, 1),
    "rot180": lambda g: np.rot90(g, 2),
    "rot270": lambda g: np.rot90(g, 3),
    "flip_ud": np.flipud,
    "flip_lr": np.fliplr,
    "transpose": np.transpose,
    "anti_transpose": lambda g: np.rot90(g, 2).T,
}
_DIHEDRAL_INVERSE = {"rot90": "rot270", "rot270": "rot90"}


@dataclass(frozen=True)
class Dihedral:
    """One of the 8 symmetries of the square: rotations, flips, (anti-)transpose."""

    name: str

    def __post_init__(self) -> None:
        if self.name not in _DIHEDRAL:
            raise ValueError(f"unknown dihedral transform {self.name!r}")

    def apply(self, grid: Grid) -> Grid:
        return np.ascontiguousarray(_DIHEDRAL[self.name](grid))

    def invert(self, grid: Grid) -> Grid:
        inverse = _DIHEDRAL_INVERSE.get(self.name, self.name)
        return np.ascontiguousarray(_DIHEDRAL[inverse](grid))


@dataclass(frozen=True)
class Upscale:
    """Each cell becomes a ``rows`` x ``cols`` block."""

    rows: int
    cols: int

    @property
    def name(self) -> str:
        if self.rows == self.cols:
            return f"upscale{self.rows}"
        return f"upscale_h{self.rows}" if self.cols == 1 else f"upscale_w{self.cols}"

    def apply(self, grid: Grid) -> Grid:
        return np.repeat(np.repeat(grid, self.rows, axis=0), self.cols, axis=1)

    def invert(self, grid: Grid) -> Grid:
        _check_divisible(grid, self.rows, self.cols, self.name)
        original = np.ascontiguousarray(grid[:: self.rows, :: self.cols])
        return _verified(original, grid, self)


@dataclass(frozen=True)
class Repeat:
    """The grid tiled ``rows`` x ``cols`` times."""

    rows: int
    cols: int

    @property
    def name(self) -> str:
        if self.rows == self.cols:
            return f"repeat{self.rows}"
        return f"repeat_h{self.rows}" if self.cols == 1 else f"repeat_w{self.cols}"

    def apply(self, grid: Grid) -> Grid:
        return np.tile(grid, (self.rows, self.cols))

    def invert(self, grid: Grid) -> Grid:
        _check_divisible(grid, self.rows, self.cols, self.name)
        height, width = grid.shape[0] // self.rows, grid.shape[1] // self.cols
        return _verified(np.ascontiguousarray(grid[:height, :width]), grid, self)


@dataclass(frozen=True)
class Reflect:
    """The grid joined to its mirror image along ``axis`` (mirror first if ``mirror_first``)."""

    axis: int
    mirror_first: bool = False

    @property
    def name(self) -> str:
        return f"reflect_{'ud' if self.axis == 0 else 'lr'}{'_rev' if self.mirror_first else ''}"

    def apply(self, grid: Grid) -> Grid:
        mirrored = np.flip(grid, axis=self.axis)
        parts = (mirrored, grid) if self.mirror_first else (grid, mirrored)
        return np.concatenate(parts, axis=self.axis)

    def invert(self, grid: Grid) -> Grid:
        counts = (2, 1) if self.axis == 0 else (1, 2)
        _check_divisible(grid, *counts, self.name)
        half = grid.shape[self.axis] // 2
        original = grid[half:] if self.axis == 0 else grid[:, half:]
        if not self.mirror_first:
            original = grid[:half] if self.axis == 0 else grid[:, :half]
        return _verified(np.ascontiguousarray(original), grid, self)


@dataclass(frozen=True)
class ColorPermutation:
    """Recolour through ``mapping`` (colour i becomes mapping[i]); black (0) stays fixed."""

    mapping: tuple[int, ...]

    def __post_init__(self) -> None:
        if sorted(self.mapping) != list(range(10)) or self.mapping[0] != 0:
            raise ValueError(f"not a permutation of 0-9 fixing 0: {self.mapping}")

    @property
    def name(self) -> str:
        return "colors" + "".join(map(str, self.mapping))

    @classmethod
    def random(cls, rng: np.random.Generator) -> ColorPermutation:
        return cls((0, *(int(c) for c in rng.permutation(np.arange(1, 10)))))

    def apply(self, grid: Grid) -> Grid:
        return np.asarray(self.mapping, dtype=np.uint8)[grid]

    def invert(self, grid: Grid) -> Grid:
        return np.argsort(np.asarray(self.mapping)).astype(np.uint8)[grid]


@dataclass(frozen=True)
class Chain:
    """Transforms applied left to right; inverted right to left."""

    steps: tuple[GridTransform, ...]

    @property
    def name(self) -> str:
        return "+".join(step.name for step in self.steps)

    def apply(self, grid: Grid) -> Grid:
        for step in self.steps:
            grid = step.apply(grid)
        return grid

    def invert(self, grid: Grid) -> Grid:
        for step in reversed(self.steps):
            grid = step.invert(grid)
        return grid


def _check_divisible(grid: Grid, rows: int, cols: int, name: str) -> None:
    if grid.shape[0] % rows or grid.shape[1] % cols:
        raise NotInvertibleError(f"{name}: shape {grid.shape} is not a multiple of {rows}x{cols}")


def _verified(original: Grid, grid: Grid, transform: GridTransform) -> Grid:
    if not np.array_equal(transform.apply(original), grid):
        raise NotInvertibleError(f"{transform.name}: grid is not in the transform's image")
    return original


_SCALED = re.compile(r"(upscale|repeat)(_h|_w)?(\d+)")
_REFLECT = re.compile(r"reflect_(ud|lr)(_rev)?")
_COLORS = re.compile(r"colors(\d+)")


def transform_from_name(name: str) -> GridTransform:
    """Parse a transform name such as ``rot90``, ``upscale_h2`` or ``transpose+upscale2``;
    the inverse of ``.name``."""
    if "+" in name:
        return Chain(tuple(transform_from_name(part) for part in name.split("+")))
    if name in _DIHEDRAL:
        return Dihedral(name)
    if match := _SCALED.fullmatch(name):
        kind, direction, factor = match.group(1), match.group(2), int(match.group(3))
        if factor < 2:
            raise ValueError(f"{name}: the factor must be at least 2")
        rows = 1 if direction == "_w" else factor
        cols = 1 if direction == "_h" else factor
        return Upscale(rows, cols) if kind == "upscale" else Repeat(rows, cols)
    if match := _REFLECT.fullmatch(name):
        return Reflect(0 if match.group(1) == "ud" else 1, mirror_first=bool(match.group(2)))
    if match := _COLORS.fullmatch(name):
        return ColorPermutation(tuple(int(digit) for digit in match.group(1)))
    raise ValueError(f"unknown transform {name!r}")


def transform_episode(episode: Episode, transform: GridTransform) -> Episode:
    """The same transform applied to every grid of the episode, inputs and outputs alike."""
    return Episode(
        tuple(
            Example(transform.apply(ex.input), transform.apply(ex.output)) for ex in episode.demos
        ),
        transform.apply(episode.query),
        None if episode.answer is None else transform.apply(episode.answer),
    )


def permute_demos(episode: Episode, rng: np.random.Generator) -> Episode:
    order = rng.permutation(len(episode.demos))
    return Episode(tuple(episode.demos[i] for i in order), episode.query, episode.answer)


def episode_fits(episode: Episode) -> bool:
    return all(fits(grid) for grid in episode.grids())


def transforms_from_names(names: Sequence[str]) -> list[GridTransform]:
    return [transform_from_name(name) for name in names]
