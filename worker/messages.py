"""What a job may say on its progress channel, checked before the agent acts on it.

A job is untrusted input to its agent: whatever it writes, the agent must stay up, keep its
lease and report something the control plane accepts. So every line is decoded and checked
here by type; a bad line raises :class:`Invalid` (the agent logs it and drops it), and what is
accepted is capped to what the control plane takes (see orchestrator/services/leases.py).

- ``progress``: ``step`` and ``total`` non-negative integers or null, ``metrics`` an object of
  numbers. Non-finite values and names past the caps are dropped, the rest kept.
- ``checkpoint``: ``step`` a non-negative integer, ``dir`` an existing directory inside the
  attempt's checkpoint folder: the agent uploads and then deletes it, so a job must not point
  it anywhere else.
- ``result``: ``values`` a JSON object; non-finite numbers become null (JSON has none). A result
  over MAX_RESULT_BYTES is *fatal*: the attempt fails saying so instead of completing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_METRICS = 200  # names per attempt: the control plane refuses reports with more
MAX_METRIC_NAME = 100  # characters
MAX_STEP = 2**31 - 1  # steps are 32-bit integer columns in the database
# The control plane takes request bodies up to 8 MiB; half of that for the result leaves room
# for metrics, the log tail and JSON's escaping in the final report.
MAX_RESULT_BYTES = 4 * 1024 * 1024
SHOWN = 200  # characters of a bad value quoted in a message


class Invalid(ValueError):
    """A message the agent drops. ``fatal``: the job's outcome can no longer be reported."""

    def __init__(self, reason: str, *, fatal: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fatal = fatal


@dataclass(frozen=True)
class ProgressUpdate:
    step: int | None
    total: int | None
    metrics: dict[str, float]
    dropped: list[str] = field(default_factory=list)  # what was left out, and why


@dataclass(frozen=True)
class CheckpointReady:
    step: int
    directory: Path


@dataclass(frozen=True)
class Result:
    values: dict[str, Any]
    dropped: list[str] = field(default_factory=list)


Message = ProgressUpdate | CheckpointReady | Result


def shown(value: Any) -> str:
    """A bad value as a message quotes it: repr, truncated."""
    text = repr(value)
    return text if len(text) <= SHOWN else text[:SHOWN] + f"... ({len(text)} characters)"


def decode(line: bytes, *, checkpoint_root: Path) -> Message:
    """One line of the progress channel as a checked message; Invalid says what is wrong."""
    try:
        raw = json.loads(line)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly nested JSON
        raise Invalid(f"not a JSON line ({type(exc).__name__}): {shown(line)}") from None
    if not isinstance(raw, dict):
        raise Invalid(f"not a JSON object: {shown(line)}")
    kind = raw.get("type")
    if kind == "progress":
        return _progress(raw)
    if kind == "checkpoint":
        return _checkpoint(raw, checkpoint_root)
    if kind == "result":
        return _result(raw)
    raise Invalid(f"unknown message type {shown(kind)}")


def _step(raw: Mapping[str, Any], name: str, *, optional: bool) -> int | None:
    value = raw.get(name)
    if value is None and optional:
        return None
    # bool is an int in Python, not in JSON's sense of a step.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_STEP:
        allowed = f"an integer from 0 to {MAX_STEP}" + (" or null" if optional else "")
        raise Invalid(f"{raw.get('type')} message: {name} must be {allowed}, not {shown(value)}")
    return value


def finite(value: Any) -> float | None:
    """``value`` as a finite float, or None for anything else (bools, strings, NaN, 1e999)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        return None
    return number if math.isfinite(number) else None


def _progress(raw: Mapping[str, Any]) -> ProgressUpdate:
    step = _step(raw, "step", optional=True)
    total = _step(raw, "total", optional=True)
    metrics_in = raw.get("metrics")
    if metrics_in is None:
        metrics_in = {}
    if not isinstance(metrics_in, dict):
        raise Invalid(f"progress message: metrics must be an object, not {shown(metrics_in)}")
    metrics: dict[str, float] = {}
    dropped: list[str] = []
    for name, value in metrics_in.items():
        number = finite(value)
        if number is None:
            dropped.append(f"metric {shown(name)}: {shown(value)} is not a finite number")
        elif len(name) > MAX_METRIC_NAME:
            dropped.append(f"metric {shown(name)}: name over {MAX_METRIC_NAME} characters")
        else:
            metrics[name] = number
    return ProgressUpdate(step=step, total=total, metrics=metrics, dropped=dropped)


def _checkpoint(raw: Mapping[str, Any], root: Path) -> CheckpointReady:
    step = _step(raw, "step", optional=False)
    assert step is not None
    where = raw.get("dir")
    if not isinstance(where, str) or not where:
        raise Invalid(f"checkpoint message: dir must be a path, not {shown(where)}")
    # Resolved: a symlink or ``..`` out of the checkpoint folder is outside it.
    directory = Path(where).resolve()
    inside = root.resolve()
    if directory == inside or not directory.is_relative_to(inside):
        raise Invalid(f"checkpoint message: dir {shown(where)} is not inside {inside}")
    if not directory.is_dir():
        raise Invalid(f"checkpoint message: dir {shown(where)} is not a directory")
    return CheckpointReady(step=step, directory=directory)


def _without_non_finite(value: Any, dropped: list[str], path: str) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        dropped.append(f"result {path}: {value} is not JSON; stored as null")
        return None
    if isinstance(value, dict):
        return {k: _without_non_finite(v, dropped, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_without_non_finite(v, dropped, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _result(raw: Mapping[str, Any]) -> Result:
    values = raw.get("values")
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise Invalid(f"result message: values must be an object, not {shown(values)}")
    dropped: list[str] = []
    clean = _without_non_finite(values, dropped, "values")
    size = len(json.dumps(clean, allow_nan=False, separators=(",", ":")).encode())
    if size > MAX_RESULT_BYTES:
        raise Invalid(
            f"the job's result is {size:,} bytes of JSON, over the limit of "
            f"{MAX_RESULT_BYTES:,} bytes (keep large outputs as files in the output directory "
            "or a checkpoint)",
            fatal=True,
        )
    return Result(values=clean, dropped=dropped)


def merge_metrics(current: dict[str, float], new: Mapping[str, float]) -> list[str]:
    """Fold ``new`` into ``current``, keeping at most MAX_METRICS names; says what was left out."""
    refused = []
    for name, value in new.items():
        if name in current or len(current) < MAX_METRICS:
            current[name] = value
        else:
            refused.append(name)
    if not refused:
        return []
    return [
        f"{len(refused):,} metric names past the first {MAX_METRICS} "
        f"(e.g. {shown(refused[0])}) dropped"
    ]
