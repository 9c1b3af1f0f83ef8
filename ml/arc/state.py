"""The ``ml.arc.ttt`` checkpoint: finished tasks' predictions, the last adapter, and the
in-flight task's training state.

Layout of a checkpoint directory::

    state.json          progress (finished tasks, in-flight task and phase, counters)
    predictions.json    attempts of every finished task, in submission layout
    last_adapter/       adapter of the most recently finished task
    inflight/train.pt   the in-flight task's adapter, optimizer, scheduler, RNG and step
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ml.common.checkpoints import (
    CheckpointError,
    read_json,
    require_files,
    torch_load,
    torch_save_atomic,
    write_json_atomic,
)

STATE_VERSION = 1
STATE_FILE = "state.json"
PREDICTIONS_FILE = "predictions.json"
LAST_ADAPTER_DIR = "last_adapter"
INFLIGHT_DIR = "inflight"
INFLIGHT_FILE = "train.pt"


@dataclass
class RunState:
    root: Path
    config_hash: str
    finished: list[str] = field(default_factory=list)
    predictions: dict[str, Any] = field(default_factory=dict)
    task_stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    inflight_task: str | None = None
    inflight_phase: str | None = None
    checkpoints: int = 0

    @classmethod
    def restore(cls, source: Path, root: Path, config_hash: str) -> RunState:
        """Copy a checkpoint into ``root`` and read it, failing fast if it is unusable."""
        require_files(source, [STATE_FILE, PREDICTIONS_FILE])
        raw = read_json(source / STATE_FILE)
        if not isinstance(raw, dict) or raw.get("version") != STATE_VERSION:
            raise CheckpointError(
                f"checkpoint {source} has an unknown state version "
                f"{raw.get('version') if isinstance(raw, dict) else raw!r}"
            )
        if raw.get("config_hash") != config_hash:
            raise CheckpointError(
                f"checkpoint {source} was written by a different config "
                f"(hash {raw.get('config_hash')}, this job's is {config_hash}); "
                "resuming would mix two experiments"
            )
        if raw.get("inflight_task"):
            require_files(source, [f"{INFLIGHT_DIR}/{INFLIGHT_FILE}"])
        predictions = read_json(source / PREDICTIONS_FILE)
        shutil.copytree(source, root, dirs_exist_ok=True)
        try:
            return cls(
                root=root,
                config_hash=config_hash,
                finished=list(raw["finished"]),
                predictions=dict(predictions),
                task_stats=dict(raw["task_stats"]),
                inflight_task=raw["inflight_task"],
                inflight_phase=raw["inflight_phase"],
                checkpoints=int(raw["checkpoints"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {source}/{STATE_FILE} is corrupt: {exc}") from exc

    def save(self) -> None:
        write_json_atomic(self.root / PREDICTIONS_FILE, self.predictions)
        write_json_atomic(
            self.root / STATE_FILE,
            {
                "version": STATE_VERSION,
                "config_hash": self.config_hash,
                "finished": self.finished,
                "task_stats": self.task_stats,
                "inflight_task": self.inflight_task,
                "inflight_phase": self.inflight_phase,
                "checkpoints": self.checkpoints,
            },
        )

    def next_step(self) -> int:
        """A checkpoint number that keeps increasing across attempts."""
        self.checkpoints += 1
        return self.checkpoints

    @property
    def inflight_path(self) -> Path:
        return self.root / INFLIGHT_DIR / INFLIGHT_FILE

    @property
    def last_adapter_dir(self) -> Path:
        return self.root / LAST_ADAPTER_DIR

    def save_inflight(self, task_id: str, phase: str, train_state: dict[str, Any]) -> None:
        torch_save_atomic(train_state, self.inflight_path)
        self.inflight_task, self.inflight_phase = task_id, phase
        self.save()

    def load_inflight(self, task_id: str, map_location: str) -> dict[str, Any] | None:
        """The saved training state of ``task_id`` if it is the one in flight."""
        if self.inflight_task != task_id:
            return None
        return torch_load(self.inflight_path, map_location=map_location)

    def finish(self, task_id: str, attempts: list[Any], stats: dict[str, Any]) -> None:
        self.predictions[task_id] = attempts
        self.task_stats[task_id] = stats
        self.finished.append(task_id)
        self.inflight_task = self.inflight_phase = None
        shutil.rmtree(self.root / INFLIGHT_DIR, ignore_errors=True)
        self.save()
