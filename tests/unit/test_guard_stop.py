"""A stop request reaches a `command` job's program, which finishes its checkpoint even though
the `/bin/sh -c` above it dies of the SIGTERM at once (worker.guard)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from worker.runner import JobFiles, JobProcess

# Checkpoints for a while after SIGTERM, then exits; a straight SIGKILL leaves no "saved".
_PROGRAM = """
import signal, sys, time
from pathlib import Path
out = Path(sys.argv[1])
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
out.joinpath("ready").write_text("")
while not stop:
    time.sleep(0.01)
time.sleep(0.5)  # writing the checkpoint
out.joinpath("saved").write_text("")
"""


def _job(tmp_path: Path) -> JobProcess:
    files = JobFiles(tmp_path / "run", output_dir=tmp_path / "out")
    files.create()
    (tmp_path / "prog.py").write_text(_PROGRAM)
    # Two commands: the shell cannot exec the program, it stays its parent.
    command = f"true; {sys.executable} {tmp_path / 'prog.py'} {tmp_path}"
    return JobProcess(files, ["/bin/sh", "-c", command], env=dict(os.environ), cwd=tmp_path)


def _wait_ready(tmp_path: Path) -> None:
    deadline = time.monotonic() + 20
    while not (tmp_path / "ready").exists():
        assert time.monotonic() < deadline, "the program never started"
        time.sleep(0.02)


def test_a_shell_commands_program_checkpoints_before_the_job_ends(tmp_path: Path) -> None:
    job = _job(tmp_path)
    _wait_ready(tmp_path)
    job.stop(grace=10)
    assert (tmp_path / "saved").exists(), "the program was killed with its shell"


def test_the_grace_still_bounds_a_program_that_ignores_the_stop(tmp_path: Path) -> None:
    job = _job(tmp_path)
    _wait_ready(tmp_path)
    started = time.monotonic()
    job.stop(grace=0.1)  # shorter than the program's checkpoint: it is killed
    assert time.monotonic() - started < 5
    time.sleep(0.8)
    assert not (tmp_path / "saved").exists()
