"""Drive a job module as a subprocess under the worker's job contract, as the agent does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.context import (
    ENV_ATTEMPT,
    ENV_CHECKPOINT_DIR,
    ENV_CONFIG,
    ENV_EXPERIMENT_ID,
    ENV_OUTPUT_DIR,
    ENV_PROGRESS_FILE,
    ENV_RESUME_DIR,
    ENV_RESUME_STEP,
    ENV_STOP_FILE,
    STAGED_PREFIX,
)

REPO_ROOT = Path(__file__).resolve().parents[3]


@dataclass
class ContractRun:
    """One attempt of a job: its own checkpoint dir, progress channel and output dir."""

    root: Path
    module: str
    config: dict[str, Any]
    attempt: int = 1
    resume_dir: Path | None = None
    # One thread: tiny models run faster without thread sync, and the CPU is shared.
    extra_env: dict[str, str] = field(default_factory=lambda: {"OMP_NUM_THREADS": "1"})

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_file = self.root / "config.json"
        self.config_file.write_text(json.dumps(self.config))
        self.checkpoint_dir = self.root / "checkpoints"
        self.progress_file = self.root / "progress.jsonl"
        self.stop_file = self.root / "stop"
        self.output_dir = self.root / "output"

    def contract_vars(self) -> dict[str, str]:
        """The job-contract environment variables of this attempt, and nothing else."""
        env = {
            ENV_EXPERIMENT_ID: "exp-test",
            ENV_ATTEMPT: str(self.attempt),
            ENV_CONFIG: str(self.config_file),
            ENV_CHECKPOINT_DIR: str(self.checkpoint_dir),
            ENV_PROGRESS_FILE: str(self.progress_file),
            ENV_STOP_FILE: str(self.stop_file),
            ENV_OUTPUT_DIR: str(self.output_dir),
        }
        if self.resume_dir is not None:
            env[ENV_RESUME_DIR] = str(self.resume_dir)
            env[ENV_RESUME_STEP] = str(int(self.resume_dir.name.removeprefix(STAGED_PREFIX)))
        return env

    def env(self) -> dict[str, str]:
        pythonpath = [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        return {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(pythonpath),
            **self.contract_vars(),
            **self.extra_env,
        }

    def start(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", self.module],
            cwd=self.root,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def run(self, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", self.module],
            cwd=self.root,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def messages(self, kind: str | None = None) -> list[dict[str, Any]]:
        if not self.progress_file.exists():
            return []
        lines = self.progress_file.read_text().splitlines()
        parsed = [json.loads(line) for line in lines if line.strip()]
        return [m for m in parsed if kind is None or m["type"] == kind]

    def result(self) -> dict[str, Any]:
        results = self.messages("result")
        assert results, f"no result reported in {self.progress_file}"
        return results[-1]["values"]

    def latest_checkpoint(self) -> Path | None:
        """The last complete staged checkpoint (what the agent would upload and resume)."""
        staged = sorted(self.checkpoint_dir.glob(f"{STAGED_PREFIX}*"))
        return staged[-1] if staged else None

    def wait_for(self, process: subprocess.Popen[bytes], predicate: Any, timeout: float) -> Path:
        """Poll staged checkpoints until ``predicate(dir)`` holds; return that dir."""
        deadline = time.monotonic() + timeout
        seen: set[Path] = set()
        while time.monotonic() < deadline:
            for staged in sorted(self.checkpoint_dir.glob(f"{STAGED_PREFIX}*")):
                if staged not in seen:
                    seen.add(staged)
                    if predicate(staged):
                        return staged
            if process.poll() is not None:
                output = process.stdout.read().decode() if process.stdout else ""
                raise AssertionError(f"job exited ({process.returncode}) first:\n{output}")
            time.sleep(0.005)
        raise AssertionError("timed out waiting for a checkpoint")
