"""Checkpoint file helpers that fail fast, naming the file and what is wrong with it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or corrupt; resuming from it would be wrong."""


def write_json_atomic(path: str | Path, value: Any) -> None:
    """Write JSON so that a reader (or a kill) never sees a half-written file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(json.dumps(value, separators=(",", ":")))
    os.replace(partial, target)


def require_files(directory: str | Path, names: Iterable[str]) -> None:
    root = Path(directory)
    if not root.is_dir():
        raise CheckpointError(f"checkpoint directory {root} does not exist")
    missing = [name for name in names if not (root / name).is_file()]
    if missing:
        raise CheckpointError(f"checkpoint {root} is incomplete: missing {', '.join(missing)}")


def read_json(path: str | Path) -> Any:
    """Parse a JSON checkpoint file, raising CheckpointError if it is missing or corrupt."""
    source = Path(path)
    try:
        return json.loads(source.read_text())
    except FileNotFoundError as exc:
        raise CheckpointError(f"checkpoint file {source} is missing") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint file {source} is corrupt: {exc}") from exc


def torch_save_atomic(value: Any, path: str | Path) -> None:
    import torch

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    torch.save(value, partial)
    os.replace(partial, target)


def torch_load(path: str | Path, map_location: str) -> Any:
    """Load tensors saved with torch.save onto ``map_location`` (weights only, no pickle code).

    ``map_location`` matters on resume: a checkpoint written on a CUDA worker must load on
    the CPU or MPS worker that picks the job up next.
    """
    import torch

    source = Path(path)
    if not source.is_file():
        raise CheckpointError(f"checkpoint file {source} is missing")
    # torch raises many exception types for a damaged file; all mean the same here.
    try:
        return torch.load(source, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"checkpoint file {source} is corrupt: {exc}") from exc
