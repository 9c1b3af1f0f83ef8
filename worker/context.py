"""The job contract: what a job process sees, and the helper it calls.

A job is any process the agent starts with these environment variables set:

- ``BATON_EXPERIMENT_ID``, ``BATON_ATTEMPT`` (1-based)
- ``BATON_CONFIG``: path of a JSON file holding the experiment's config
- ``BATON_CHECKPOINT_DIR``: a private scratch directory for this attempt
- ``BATON_RESUME_DIR``: the latest complete checkpoint, downloaded; unset on a fresh start
- ``BATON_RESUME_STEP``: the step of that checkpoint
- ``BATON_PROGRESS_FILE``: an append-only JSON-lines channel read by the agent
- ``BATON_STOP_FILE``: appears when the agent wants the job to checkpoint and exit
- ``BATON_DEADLINE``: Unix time by which the job must have stopped, if known
- ``BATON_OUTPUT_DIR``: where a job writes artifacts that should outlive it
- ``BATON_INPUTS_DIR``: the prerequisites (``depends_on``) of this experiment: their final
  checkpoints, downloaded to ``<dir>/<experiment id>/``, and ``inputs.json`` describing them

SIGTERM means "checkpoint now and exit": ``JobContext.from_env()`` turns it into
``should_stop()`` returning True instead of killing the process.

Only the standard library is used here, so a job in any environment can import it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

ENV_EXPERIMENT_ID = "BATON_EXPERIMENT_ID"
ENV_ATTEMPT = "BATON_ATTEMPT"
ENV_CONFIG = "BATON_CONFIG"
ENV_CHECKPOINT_DIR = "BATON_CHECKPOINT_DIR"
ENV_RESUME_DIR = "BATON_RESUME_DIR"
ENV_RESUME_STEP = "BATON_RESUME_STEP"
ENV_PROGRESS_FILE = "BATON_PROGRESS_FILE"
ENV_STOP_FILE = "BATON_STOP_FILE"
ENV_DEADLINE = "BATON_DEADLINE"
ENV_OUTPUT_DIR = "BATON_OUTPUT_DIR"
ENV_INPUTS_DIR = "BATON_INPUTS_DIR"
INPUTS_INDEX = "inputs.json"

STAGED_PREFIX = "step-"


@dataclass(frozen=True)
class JobInput:
    """A finished prerequisite: its name, kind, result and final checkpoint directory."""

    experiment_id: int
    name: str
    kind: str
    result: dict[str, Any]
    directory: Path | None


def staged_name(step: int) -> str:
    """Directory name of a checkpoint staged for upload; sorts by step."""
    return f"{STAGED_PREFIX}{step:012d}"


@dataclass
class JobContext:
    """A running job's view of Baton. Build it with :meth:`from_env`."""

    experiment_id: str
    attempt: int
    config: dict[str, Any]
    checkpoint_root: Path
    progress_file: Path | None
    stop_file: Path | None
    resume_dir: Path | None = None
    resume_step: int | None = None
    deadline: float | None = None
    output_dir: Path | None = None
    inputs_dir: Path | None = None
    _stop_requested: threading.Event = field(default_factory=threading.Event, repr=False)

    @classmethod
    def from_env(cls, *, install_signal_handler: bool = True) -> JobContext:
        """Read the contract from the environment; outside Baton, run standalone in ./baton-run."""
        env = os.environ
        config_path = env.get(ENV_CONFIG)
        config: dict[str, Any] = {}
        if config_path:
            config = json.loads(Path(config_path).read_text())
        checkpoint_root = Path(env.get(ENV_CHECKPOINT_DIR) or "baton-run/checkpoints")
        checkpoint_root.mkdir(parents=True, exist_ok=True)
        resume = env.get(ENV_RESUME_DIR)
        deadline = env.get(ENV_DEADLINE)
        output = env.get(ENV_OUTPUT_DIR)
        inputs = env.get(ENV_INPUTS_DIR)
        ctx = cls(
            experiment_id=env.get(ENV_EXPERIMENT_ID, "local"),
            attempt=int(env.get(ENV_ATTEMPT, "1")),
            config=config,
            checkpoint_root=checkpoint_root,
            progress_file=Path(env[ENV_PROGRESS_FILE]) if env.get(ENV_PROGRESS_FILE) else None,
            stop_file=Path(env[ENV_STOP_FILE]) if env.get(ENV_STOP_FILE) else None,
            resume_dir=Path(resume) if resume else None,
            resume_step=int(env[ENV_RESUME_STEP]) if env.get(ENV_RESUME_STEP) else None,
            deadline=float(deadline) if deadline else None,
            output_dir=Path(output) if output else None,
            inputs_dir=Path(inputs) if inputs else None,
        )
        if install_signal_handler:
            signal.signal(signal.SIGTERM, ctx._on_sigterm)
        return ctx

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self._stop_requested.set()

    def resume(self) -> Path | None:
        """The directory of the latest complete checkpoint, or None on a fresh start."""
        if self.resume_dir is not None and self.resume_dir.is_dir():
            return self.resume_dir
        return None

    def inputs(self) -> list[JobInput]:
        """The prerequisites this experiment waited for, in the order they were named."""
        if self.inputs_dir is None or not (self.inputs_dir / INPUTS_INDEX).is_file():
            return []
        entries = json.loads((self.inputs_dir / INPUTS_INDEX).read_text())
        return [
            JobInput(
                experiment_id=e["experiment_id"],
                name=e["name"],
                kind=e["kind"],
                result=e.get("result") or {},
                directory=Path(e["directory"]) if e.get("directory") else None,
            )
            for e in entries
        ]

    def checkpoint(self, directory: str | os.PathLike[str], step: int) -> None:
        """Hand the contents of ``directory`` to Baton as the checkpoint at ``step``.

        The files are copied before this returns, so the job may overwrite ``directory``
        right away; the agent uploads the copy in the background.
        """
        if step < 0:
            raise ValueError("checkpoint step must be >= 0")
        source = Path(directory)
        if not source.is_dir():
            raise FileNotFoundError(f"checkpoint directory {source} does not exist")
        final = self.checkpoint_root / staged_name(step)
        # A checkpoint of the same step (a periodic one, then one on SIGTERM) may still wait for
        # its upload: never replace a staged directory under the agent, add a new one.
        copies = 0
        while final.exists():
            copies += 1
            final = self.checkpoint_root / f"{staged_name(step)}.{copies}"
        staging = self.checkpoint_root / f".{final.name}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(source, staging)
        # The rename is the commit point: the agent never sees a half-copied checkpoint.
        staging.rename(final)
        self._emit({"type": "checkpoint", "step": step, "dir": str(final)})

    def progress(self, step: int, total: int | None = None, **metrics: float) -> None:
        """Report progress and scalar metrics; the agent forwards them with its heartbeat."""
        self._emit({"type": "progress", "step": step, "total": total, "metrics": metrics})

    def result(self, **values: Any) -> None:
        """Record the job's final result (JSON-serialisable values), stored on success."""
        self._emit({"type": "result", "values": values})

    def should_stop(self) -> bool:
        """True once Baton asked the job to checkpoint and exit (SIGTERM or the stop file)."""
        if self._stop_requested.is_set():
            return True
        if self.stop_file is not None and self.stop_file.exists():
            self._stop_requested.set()
            return True
        return False

    def seconds_left(self) -> float | None:
        """Seconds until the session deadline, if one is known."""
        return None if self.deadline is None else self.deadline - time.time()

    def _emit(self, message: dict[str, Any]) -> None:
        if self.progress_file is None:
            return
        line = (json.dumps(message, separators=(",", ":")) + "\n").encode()
        # One O_APPEND write per message keeps lines whole when the agent reads concurrently.
        fd = os.open(self.progress_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
