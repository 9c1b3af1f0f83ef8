"""The built-in demo job: its digest, and that resuming from a checkpoint changes nothing."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from worker.context import staged_name
from worker.jobs.counter import expected_digest
from worker.runner import JobFiles, contract_env


def _chain(steps: int) -> str:
    # Written out independently of worker.jobs.counter.fold, so the two can disagree.
    digest = ""
    for step in range(steps):
        digest = hashlib.sha256(f"{digest}:{step}".encode()).hexdigest()
    return digest


@pytest.mark.parametrize("steps", [0, 1, 2, 30])
def test_expected_digest_is_the_sha256_chain(steps: int) -> None:
    assert expected_digest(steps) == _chain(steps)


def test_expected_digest_depends_on_the_step_count() -> None:
    assert len({expected_digest(n) for n in range(6)}) == 6


def _run(
    root: Path, config: dict[str, Any], *, attempt: int = 1, resume: Path | None = None
) -> tuple[int, list[dict[str, Any]], JobFiles]:
    """Run the counter as the agent would: a child process with the contract's environment."""
    files = JobFiles(root)
    files.create()
    files.config.write_text(json.dumps(config))
    resume_step = None
    if resume is not None:
        files.resume.parent.mkdir(parents=True, exist_ok=True)
        resume.rename(files.resume)
        resume_step = json.loads((files.resume / "state.json").read_text())["step"]
    env = contract_env(
        files, experiment_id=1, attempt=attempt, resume_step=resume_step, deadline=None
    )
    done = subprocess.run(
        [sys.executable, "-m", "worker.jobs.counter"],
        env=env,
        cwd=root,
        capture_output=True,
        timeout=60,
    )
    messages = [json.loads(line) for line in files.progress.read_text().splitlines()]
    return done.returncode, messages, files


def _result(messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    results = [m["values"] for m in messages if m["type"] == "result"]
    assert len(results) <= 1
    return results[0] if results else None


CONFIG = {"steps": 12, "step_seconds": 0, "checkpoint_every": 5}


def test_a_full_run_reports_progress_checkpoints_and_the_expected_digest(tmp_path: Path) -> None:
    code, messages, files = _run(tmp_path / "a1", CONFIG)
    assert code == 0
    assert [m["step"] for m in messages if m["type"] == "progress"] == list(range(1, 13))
    # Every 5 steps, but not at the very end (the result makes that one pointless).
    assert [m["step"] for m in messages if m["type"] == "checkpoint"] == [5, 10]
    assert (files.checkpoints / staged_name(10) / "state.json").is_file()
    assert _result(messages) == {
        "steps": 12,
        "digest": expected_digest(12),
        "history": [{"attempt": 1, "start_step": 0}],
    }


def test_resuming_from_a_checkpoint_gives_the_same_digest(tmp_path: Path) -> None:
    _, _, first = _run(tmp_path / "a1", CONFIG)
    code, messages, _ = _run(
        tmp_path / "a2", CONFIG, attempt=2, resume=first.checkpoints / staged_name(10)
    )
    assert code == 0
    assert [m["step"] for m in messages if m["type"] == "progress"] == [11, 12]
    assert _result(messages) == {
        "steps": 12,
        "digest": expected_digest(12),
        "history": [{"attempt": 1, "start_step": 0}, {"attempt": 2, "start_step": 10}],
    }


def test_asked_to_stop_it_checkpoints_and_exits_cleanly(tmp_path: Path) -> None:
    root = tmp_path / "a1"
    root.mkdir()
    (root / "STOP").touch()  # the agent's stop file, already there at start
    code, messages, files = _run(root, CONFIG)
    assert code == 0
    assert messages == [
        {"type": "checkpoint", "step": 0, "dir": str(files.checkpoints / staged_name(0))}
    ]


def test_fail_at_step_fails(tmp_path: Path) -> None:
    code, messages, _ = _run(tmp_path / "a1", {**CONFIG, "fail_at_step": 3})
    assert code == 3
    assert _result(messages) is None
    assert [m["step"] for m in messages if m["type"] == "progress"] == [1, 2, 3]
