"""Kill-and-resume: a training job killed mid-run and restarted from its last checkpoint
ends with exactly the metrics of an uninterrupted run.

The job runs as the agent runs it: ``python -m ml.video.train_job`` with the contract's
environment variables, and a restart gets BATON_RESUME_DIR = the last staged checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ml.video.job import EXIT_STOPPED
from ml.video.train import STATE_FILE
from worker.context import STAGED_PREFIX

CHECKPOINT_EVERY = 10
MAX_STEPS = 120


def job_config(dataset_dir: Path, backbone: str) -> dict[str, Any]:
    return {
        "dataset_dir": str(dataset_dir),
        "model": {"backbone": backbone, "width": 4, "alpha": 2},
        "forecast_horizon": 2,
        "val_fraction": 0.2,
        "test_fraction": 0.25,
        "batch_size": 8,
        "max_steps": MAX_STEPS,
        "eval_every": 20,
        "checkpoint_every": CHECKPOINT_EVERY,
        "log_every": 5,
        "warmup_steps": 20,
        "early_stopping_patience": 3,
        "seed": 5,
        "num_threads": 1,
    }


class Attempt:
    """One attempt of the job, with the directories the agent would give it."""

    def __init__(self, root: Path, config: dict[str, Any], resume: Path | None = None):
        root.mkdir(parents=True)
        self.root = root
        (root / "config.json").write_text(json.dumps(config))
        env = {
            **os.environ,
            "BATON_EXPERIMENT_ID": "resume-test",
            "BATON_ATTEMPT": "2" if resume else "1",
            "BATON_CONFIG": str(root / "config.json"),
            "BATON_CHECKPOINT_DIR": str(root / "checkpoints"),
            "BATON_PROGRESS_FILE": str(root / "progress.jsonl"),
            "BATON_STOP_FILE": str(root / "stop"),
            "BATON_OUTPUT_DIR": str(root / "output"),
        }
        if resume is not None:
            env["BATON_RESUME_DIR"] = str(resume)
            env["BATON_RESUME_STEP"] = str(int(resume.name.removeprefix(STAGED_PREFIX)))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ml.video.train_job"],
            cwd=root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def staged(self) -> list[Path]:
        root = self.root / "checkpoints"
        return sorted(root.glob(f"{STAGED_PREFIX}*")) if root.is_dir() else []

    def wait_for_checkpoint(self, min_step: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            staged = self.staged()
            if staged and int(staged[-1].name.removeprefix(STAGED_PREFIX)) >= min_step:
                return
            assert self.process.poll() is None, self.process.stderr.read().decode()
            time.sleep(0.005)
        raise AssertionError(f"no checkpoint at step >= {min_step} within {timeout}s")

    def finish(self, timeout: float = 150.0) -> int:
        _, stderr = self.process.communicate(timeout=timeout)
        self.stderr = stderr.decode()
        return self.process.returncode

    def messages(self, kind: str) -> list[dict[str, Any]]:
        lines = (self.root / "progress.jsonl").read_text().splitlines()
        return [m for m in map(json.loads, lines) if m["type"] == kind]

    def result(self) -> dict[str, Any]:
        (message,) = self.messages("result")
        return message["values"]

    def download_latest(self, destination: Path) -> Path:
        """What the agent does on restart: fetch the newest complete checkpoint."""
        latest = self.staged()[-1]
        assert (latest / STATE_FILE).is_file()
        return Path(shutil.copytree(latest, destination / latest.name))


def resume_and_compare(
    interrupted: Attempt, reference: dict[str, Any], reference_root: Path, tmp: Path
) -> None:
    assert interrupted.messages("result") == []
    checkpoint = interrupted.download_latest(tmp / "downloaded")
    resumed = Attempt(
        tmp / "resumed", json.loads((interrupted.root / "config.json").read_text()), checkpoint
    )
    assert resumed.finish() == 0, resumed.stderr
    first_step = resumed.messages("progress")[0]["step"]
    assert first_step > int(checkpoint.name.removeprefix(STAGED_PREFIX))
    assert resumed.result() == reference
    predictions = "output/predictions.jsonl"
    assert (resumed.root / predictions).read_text() == (reference_root / predictions).read_text()


@pytest.fixture(scope="module", params=["i3d", "slowfast"])
def reference(
    request: pytest.FixtureRequest, tiny_dataset_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Any], Attempt]:
    attempt = Attempt(
        tmp_path_factory.mktemp("ref") / "run", job_config(tiny_dataset_dir, request.param)
    )
    assert attempt.finish() == 0, attempt.stderr
    return attempt.result(), attempt


def test_killed_run_resumes_to_identical_metrics(
    reference: tuple[dict[str, Any], Attempt], tmp_path: Path
) -> None:
    result, ref = reference
    config = json.loads((ref.root / "config.json").read_text())
    killed = Attempt(tmp_path / "killed", config)
    killed.wait_for_checkpoint(2 * CHECKPOINT_EVERY)
    killed.process.send_signal(signal.SIGKILL)
    assert killed.finish() == -signal.SIGKILL
    resume_and_compare(killed, result, ref.root, tmp_path)


# The graceful path shares the resume code with the kill test: one backbone is enough.
@pytest.mark.parametrize("reference", ["slowfast"], indirect=True)
def test_stopped_run_checkpoints_exits_and_resumes_to_identical_metrics(
    reference: tuple[dict[str, Any], Attempt], tmp_path: Path
) -> None:
    result, ref = reference
    config = json.loads((ref.root / "config.json").read_text())
    stopped = Attempt(tmp_path / "stopped", config)
    stopped.wait_for_checkpoint(CHECKPOINT_EVERY)
    stopped.process.send_signal(signal.SIGTERM)
    assert stopped.finish() == EXIT_STOPPED, stopped.stderr
    # SIGTERM means "checkpoint now": no reported step is newer than the last checkpoint.
    last = stopped.messages("checkpoint")[-1]["step"]
    assert all(m["step"] <= last for m in stopped.messages("progress"))
    resume_and_compare(stopped, result, ref.root, tmp_path)
