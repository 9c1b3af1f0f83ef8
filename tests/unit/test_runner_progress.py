"""The agent's side of the progress channel: whole JSON lines only, however the bytes arrive."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from worker.runner import JobFiles, JobProcess


@pytest.fixture
def channel(tmp_path: Path) -> Iterator[JobProcess]:
    """A JobProcess whose child has already exited, so only the test writes the channel."""
    files = JobFiles(tmp_path / "attempt")
    files.create()
    job = JobProcess(files, [sys.executable, "-c", "pass"], env=dict(os.environ), cwd=tmp_path)
    assert job.wait() == 0
    yield job


def _append(job: JobProcess, data: bytes) -> None:
    with job.files.progress.open("ab") as fh:
        fh.write(data)


def test_a_partial_line_waits_for_its_end(channel: JobProcess) -> None:
    _append(channel, b'{"type":"progress","st')
    assert channel.read_messages() == []
    _append(channel, b'ep":1}\n{"type":"result","values":{}}\n{"type"')
    assert channel.read_messages() == [
        {"type": "progress", "step": 1},
        {"type": "result", "values": {}},
    ]
    _append(channel, b':"progress","step":2}\n')
    assert channel.read_messages() == [{"type": "progress", "step": 2}]
    assert channel.read_messages() == [], "nothing is read twice"


def test_a_character_split_across_writes_survives(channel: JobProcess) -> None:
    line = json.dumps({"type": "result", "values": {"name": "café ✓"}}, ensure_ascii=False).encode()
    cut = line.index("é".encode()) + 1  # in the middle of the two bytes of "é"
    _append(channel, line[:cut])
    assert channel.read_messages() == []
    _append(channel, line[cut:] + b"\n")
    assert channel.read_messages() == [{"type": "result", "values": {"name": "café ✓"}}]


def test_a_malformed_line_is_skipped_not_fatal(channel: JobProcess) -> None:
    _append(channel, b'not json\n\n{"type":"progress","step":3}\n')
    assert channel.read_messages() == [{"type": "progress", "step": 3}]


def test_a_line_that_is_not_an_object_is_skipped(channel: JobProcess) -> None:
    _append(channel, b'42\n"done"\n[1]\n{"type":"progress","step":4}\n')
    assert channel.read_messages() == [{"type": "progress", "step": 4}]


_WRITER = textwrap.dedent(
    """
    from worker.context import JobContext

    ctx = JobContext.from_env(install_signal_handler=False)
    for step in range(1, 2001):
        ctx.progress(step, 2000, loss=1.0 / step)
    """
)


def test_reading_while_a_real_job_writes_loses_and_repeats_nothing(tmp_path: Path) -> None:
    files = JobFiles(tmp_path / "attempt")
    files.create()
    env = {**os.environ, "BATON_PROGRESS_FILE": str(files.progress)}
    env["BATON_CHECKPOINT_DIR"] = str(files.checkpoints)
    job = JobProcess(files, [sys.executable, "-c", _WRITER], env=env, cwd=tmp_path)
    steps: list[int] = []
    while job.poll() is None:
        steps += [m["step"] for m in job.read_messages()]
    assert job.wait() == 0, job.log_tail()
    steps += [m["step"] for m in job.read_messages()]
    assert steps == list(range(1, 2001))
