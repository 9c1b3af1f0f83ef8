"""The ``ml.arc.ttt`` checkpoint: finished tasks' predictions and stats, and which tasks were
in flight. It holds no adapter and no optimizer state, so it stays small.

Layout of a checkpoint directory::

    state.json          progress (finished tasks and their stats, tasks in flight, counters)
    predictions.json    attempts of every finished task, in submission layout

Size: at most two 30x30 attempts per test output, ~4 KB of JSON each; ARC-AGI-1's 400
evaluation tasks have 419 test outputs, so predictions.json stays under ~2 MB and state.json
(a few hundred bytes of stats per task) under ~0.5 MB, whatever the LoRA rank. Keeping the
adapter instead would not fit the 50 MB bound: a rank-128 adapter on the recipe's targets of
Llama-3-8B (q, v, gate, up, down in 32 layers) has 128 x (4096+4096 + 4096+1024 +
3 x (4096+14336)) x 32 = 281M parameters, ~0.5 GiB in 16-bit, plus ~2.1 GiB of AdamW moments
in fp32. So a task interrupted mid-training restarts from its beginning; its seeded batch
order makes the restart train exactly what the first try would have.

A task stays "in flight" from its start until it is finished. A resumed run that finds one
knows the previous attempt died during it (a clean stop takes it out of flight): after
:data:`CRASHES_PER_LEVEL` such deaths at one level the task is started one level lower (less
or no TTT, see ``ml.arc.solve``), so a task that kills the process (an out-of-memory error
the CUDA driver does not survive) cannot be retried forever.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ml.common.checkpoints import CheckpointError, read_json, require_files, write_json_atomic

STATE_VERSION = 2
STATE_FILE = "state.json"
PREDICTIONS_FILE = "predictions.json"
CRASHES_PER_LEVEL = 2
"""Deaths during one task tolerated at a level: one may be a lost worker, not the task."""


@dataclass
class RunState:
    root: Path
    config_hash: str
    finished: list[str] = field(default_factory=list)
    predictions: dict[str, Any] = field(default_factory=dict)
    task_stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    inflight: dict[str, dict[str, int]] = field(default_factory=dict)
    """Task id -> {"level", "crashes", "stopped"} of every task started and not finished."""
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
        predictions = read_json(source / PREDICTIONS_FILE)
        root.mkdir(parents=True, exist_ok=True)
        for name in (STATE_FILE, PREDICTIONS_FILE):
            shutil.copy2(source / name, root / name)
        try:
            return cls(
                root=root,
                config_hash=config_hash,
                finished=list(raw["finished"]),
                predictions=dict(predictions),
                task_stats=dict(raw["task_stats"]),
                inflight={
                    str(task): {key: int(entry[key]) for key in ("level", "crashes", "stopped")}
                    for task, entry in raw["inflight"].items()
                },
                checkpoints=int(raw["checkpoints"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
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
                "inflight": self.inflight,
                "checkpoints": self.checkpoints,
            },
        )

    def next_step(self) -> int:
        """A checkpoint number that keeps increasing across attempts."""
        self.checkpoints += 1
        return self.checkpoints

    def start(self, task_id: str) -> int:
        """Put ``task_id`` in flight; the level to try it at (0: full TTT)."""
        level, crashes = 0, 0
        entry = self.inflight.get(task_id)
        if entry is not None:
            level, crashes = entry["level"], entry["crashes"]
            if not entry["stopped"]:  # the attempt that started it died during it
                crashes += 1
                if crashes >= CRASHES_PER_LEVEL:
                    level, crashes = level + 1, 0
        self.inflight[task_id] = {"level": level, "crashes": crashes, "stopped": 0}
        self.save()
        return level

    def crashed_before(self, task_id: str) -> bool:
        """True if an attempt died while ``task_id`` was in flight (not a clean stop)."""
        entry = self.inflight.get(task_id)
        return entry is not None and not entry["stopped"]

    def stopped(self, task_id: str) -> None:
        """A stop request interrupted ``task_id`` cleanly: it restarts at the same level."""
        if task_id in self.inflight:
            self.inflight[task_id]["stopped"] = 1
        self.save()

    def finish(self, task_id: str, attempts: list[Any], stats: dict[str, Any]) -> None:
        self.predictions[task_id] = attempts
        self.task_stats[task_id] = stats
        self.finished.append(task_id)
        self.inflight.pop(task_id, None)
        self.save()
