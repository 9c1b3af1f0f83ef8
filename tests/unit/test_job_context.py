"""The job contract helper (worker/context.py), driven through its environment variables."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from worker import context as contract
from worker.checkpoints.base import CheckpointError, CheckpointRef, build_manifest
from worker.context import JobContext, staged_name
from worker.runner import JobFiles, contract_env


def messages(job: JobFiles) -> list[dict[str, Any]]:
    raw = job.progress.read_bytes()
    assert raw.endswith(b"\n"), "every message is a whole line"
    return [json.loads(line) for line in raw.splitlines()]


@pytest.fixture
def job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> JobFiles:
    """The environment the agent gives a job, built by the agent's own contract_env."""
    files = JobFiles(tmp_path / "attempt")
    files.root.mkdir()
    files.config.write_text(json.dumps({"steps": 3, "lr": 0.1}))
    env = contract_env(files, experiment_id=42, attempt=2, resume_step=None, deadline=None)
    for name in (contract.ENV_RESUME_DIR, contract.ENV_RESUME_STEP, contract.ENV_DEADLINE):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        if name.startswith("BATON_"):
            monkeypatch.setenv(name, value)
    return files


def _ctx() -> JobContext:
    # In-process tests keep pytest's own SIGTERM handling; the signal path runs in a subprocess.
    return JobContext.from_env(install_signal_handler=False)


def test_from_env_reads_the_contract(job: JobFiles, monkeypatch: pytest.MonkeyPatch) -> None:
    resume = job.root / "resume"
    resume.mkdir()
    monkeypatch.setenv(contract.ENV_RESUME_DIR, str(resume))
    monkeypatch.setenv(contract.ENV_RESUME_STEP, "15")
    monkeypatch.setenv(contract.ENV_DEADLINE, str(time.time() + 100))
    ctx = _ctx()
    assert (ctx.experiment_id, ctx.attempt, ctx.config) == ("42", 2, {"steps": 3, "lr": 0.1})
    assert ctx.checkpoint_root == job.checkpoints and job.checkpoints.is_dir()
    assert ctx.resume() == resume and ctx.resume_step == 15
    seconds_left = ctx.seconds_left()
    assert seconds_left is not None and 90 < seconds_left <= 100


def test_fresh_start_has_nothing_to_resume(job: JobFiles) -> None:
    ctx = _ctx()
    assert ctx.resume() is None and ctx.resume_step is None and ctx.seconds_left() is None


def test_resume_dir_that_is_not_there_means_fresh_start(
    job: JobFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(contract.ENV_RESUME_DIR, str(job.root / "missing"))
    assert _ctx().resume() is None


def test_checkpoint_copies_into_a_staged_step_dir_and_tells_the_agent(
    job: JobFiles, tmp_path: Path
) -> None:
    ctx = _ctx()
    scratch = tmp_path / "scratch"
    (scratch / "sub").mkdir(parents=True)
    (scratch / "state.json").write_text('{"step": 7}')
    (scratch / "sub" / "w.bin").write_bytes(b"abc")

    ctx.checkpoint(scratch, 7)
    staged = job.checkpoints / "step-000000000007"
    assert staged_name(7) == staged.name
    assert (staged / "state.json").read_text() == '{"step": 7}'
    assert (staged / "sub" / "w.bin").read_bytes() == b"abc"
    # A copy: the job may overwrite its scratch dir at once without touching the checkpoint.
    (scratch / "state.json").write_text('{"step": 8}')
    assert (staged / "state.json").read_text() == '{"step": 7}'
    # Nothing half-copied is left next to it for the agent to trip over.
    assert sorted(p.name for p in job.checkpoints.iterdir()) == [staged.name]
    assert messages(job) == [{"type": "checkpoint", "step": 7, "dir": str(staged)}]


def test_staged_names_sort_by_step() -> None:
    names = [staged_name(s) for s in (100, 9, 10)]
    assert sorted(names) == [staged_name(9), staged_name(10), staged_name(100)]
    assert staged_name(123) == "step-000000000123"


def test_checkpoint_refuses_bad_input(job: JobFiles, tmp_path: Path) -> None:
    ctx = _ctx()
    with pytest.raises(ValueError, match="step"):
        ctx.checkpoint(tmp_path, -1)
    with pytest.raises(FileNotFoundError):
        ctx.checkpoint(tmp_path / "nope", 1)
    assert not job.progress.exists(), "a refused checkpoint must not be announced"


def test_progress_and_result_are_json_lines(job: JobFiles) -> None:
    ctx = _ctx()
    ctx.progress(1, 3, loss=0.5)
    ctx.progress(2)
    ctx.result(digest="abc", history=[{"attempt": 1}])
    assert messages(job) == [
        {"type": "progress", "step": 1, "total": 3, "metrics": {"loss": 0.5}},
        {"type": "progress", "step": 2, "total": None, "metrics": {}},
        {"type": "result", "values": {"digest": "abc", "history": [{"attempt": 1}]}},
    ]


def test_should_stop_via_the_stop_file(job: JobFiles) -> None:
    ctx = _ctx()
    assert ctx.should_stop() is False
    job.stop.touch()
    assert ctx.should_stop() is True
    job.stop.unlink()
    assert ctx.should_stop() is True, "once asked to stop, the job stays asked"


_SIGTERM_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time
    from worker.context import JobContext

    ctx = JobContext.from_env(install_signal_handler=sys.argv[1] == "install")
    before = ctx.should_stop()
    os.kill(os.getpid(), signal.SIGTERM)
    end = time.monotonic() + 10
    while not ctx.should_stop() and time.monotonic() < end:
        time.sleep(0.01)
    print(f"before={before} after={ctx.should_stop()}", flush=True)
    """
)


def test_should_stop_via_sigterm_when_installed(job: JobFiles) -> None:
    run = subprocess.run(
        [sys.executable, "-c", _SIGTERM_SCRIPT, "install"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "before=False after=True"


def test_without_the_handler_sigterm_still_kills(job: JobFiles) -> None:
    # The control for the test above: it is the handler that turns SIGTERM into should_stop().
    run = subprocess.run(
        [sys.executable, "-c", _SIGTERM_SCRIPT, "no"], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == -15 and run.stdout == ""


def test_standalone_run_outside_baton(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A job script run by hand: no contract variables, no agent listening."""
    for name in [v for k, v in vars(contract).items() if k.startswith("ENV_")]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    ctx = _ctx()
    assert (ctx.experiment_id, ctx.attempt, ctx.config) == ("local", 1, {})
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    ctx.progress(1)  # no progress channel: a no-op, not a crash
    ctx.checkpoint(scratch, 1)
    assert (tmp_path / "baton-run" / "checkpoints" / staged_name(1)).is_dir()
    assert ctx.should_stop() is False


def test_a_second_checkpoint_of_a_step_never_replaces_one_awaiting_upload(
    job: JobFiles, tmp_path: Path
) -> None:
    """A periodic checkpoint at step 25, then one on SIGTERM at step 25: the agent may not have
    uploaded the first yet, so the second is staged beside it, both complete."""
    ctx = _ctx()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "state.json").write_text("first")
    ctx.checkpoint(scratch, 25)
    (scratch / "state.json").write_text("second")
    ctx.checkpoint(scratch, 25)
    first, second = (Path(m["dir"]) for m in messages(job) if m["type"] == "checkpoint")
    assert first != second and first.parent == second.parent == job.checkpoints
    assert (first / "state.json").read_text() == "first"
    assert (second / "state.json").read_text() == "second"


def test_a_staged_directory_that_is_gone_never_becomes_an_empty_checkpoint(
    tmp_path: Path,
) -> None:
    ref = CheckpointRef(experiment_id="1", attempt=1, step=25)
    with pytest.raises(CheckpointError, match="gone"):
        build_manifest(ref, tmp_path / "missing")
