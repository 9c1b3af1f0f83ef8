"""The agent's side of the progress channel: whole lines only, however the bytes arrive, and
never more of a line than MAX_LINE_BYTES in memory."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from worker import runner
from worker.runner import JobFiles, JobProcess, Overlong


@pytest.fixture
def channel(tmp_path: Path) -> Iterator[JobProcess]:
    """A JobProcess whose child has already exited, so only the test writes the channel."""
    files = JobFiles(tmp_path / "attempt")
    files.create()
    job = JobProcess(files, [sys.executable, "-c", "pass"], env=dict(os.environ), cwd=tmp_path)
    assert job.wait() == 0
    yield job


def _decoded(job: JobProcess) -> list[dict[str, Any]]:
    lines = job.read_lines()
    assert all(isinstance(line, bytes) for line in lines), lines
    return [json.loads(line) for line in lines if isinstance(line, bytes)]


def _append(job: JobProcess, data: bytes) -> None:
    with job.files.progress.open("ab") as fh:
        fh.write(data)


def test_a_partial_line_waits_for_its_end(channel: JobProcess) -> None:
    _append(channel, b'{"type":"progress","st')
    assert channel.read_lines() == []
    _append(channel, b'ep":1}\n{"type":"result","values":{}}\n{"type"')
    assert channel.read_lines() == [
        b'{"type":"progress","step":1}',
        b'{"type":"result","values":{}}',
    ]
    _append(channel, b':"progress","step":2}\n')
    assert channel.read_lines() == [b'{"type":"progress","step":2}']
    assert channel.read_lines() == [], "nothing is read twice"


def test_a_character_split_across_writes_survives(channel: JobProcess) -> None:
    line = json.dumps({"type": "result", "values": {"name": "café ✓"}}, ensure_ascii=False).encode()
    cut = line.index("é".encode()) + 1  # in the middle of the two bytes of "é"
    _append(channel, line[:cut])
    assert channel.read_lines() == []
    _append(channel, line[cut:] + b"\n")
    assert _decoded(channel) == [{"type": "result", "values": {"name": "café ✓"}}]


def test_an_overlong_line_is_skipped_to_its_end(
    channel: JobProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "MAX_LINE_BYTES", 10)
    monkeypatch.setattr(runner, "READ_CHUNK_BYTES", 4)
    _append(channel, b"short\n" + b"x" * 25)
    assert channel.read_lines() == [b"short"]
    _append(channel, b"y" * 5 + b"\nok\n")
    assert channel.read_lines() == [Overlong(30), b"ok"]


def test_a_deleted_or_swapped_channel_reads_as_empty(channel: JobProcess) -> None:
    channel.files.progress.unlink()
    assert channel.read_lines() == []
    os.mkfifo(channel.files.progress)  # opening a FIFO for reading would block
    assert channel.read_lines() == []


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
        steps += [m["step"] for m in _decoded(job)]
    assert job.wait() == 0, job.log_tail()
    steps += [m["step"] for m in _decoded(job)]
    assert steps == list(range(1, 2001))
