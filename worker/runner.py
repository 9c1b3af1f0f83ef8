"""One job as a child process: environment per the job contract, progress channel, signals."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker import context as contract
from worker.jobenv import platform_environment

log = logging.getLogger(__name__)

LOG_TAIL_BYTES = 32 * 1024
READ_CHUNK_BYTES = 1024 * 1024
# Longer than any message worker.messages accepts (a result is at most 4 MiB of JSON), so an
# oversized result is still read and refused with its size.
MAX_LINE_BYTES = 64 * 1024 * 1024


@dataclass
class JobFiles:
    """The directories and files of one attempt, under the agent's work dir."""

    root: Path
    # Artifacts meant to outlive the attempt live apart from its scratch directory.
    output_dir: Path | None = None

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def resume(self) -> Path:
        return self.root / "resume"

    @property
    def inputs(self) -> Path:
        return self.root / "inputs"

    @property
    def output(self) -> Path:
        return self.output_dir or self.root / "output"

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def progress(self) -> Path:
        return self.root / "progress.jsonl"

    @property
    def stop(self) -> Path:
        return self.root / "STOP"

    @property
    def log(self) -> Path:
        return self.root / "job.log"

    def create(self) -> None:
        for path in (self.checkpoints, self.output):
            path.mkdir(parents=True, exist_ok=True)
        self.progress.touch()


@dataclass(frozen=True)
class Overlong:
    """A progress-channel line over MAX_LINE_BYTES, skipped unread."""

    size: int


@dataclass
class Progress:
    """What the job has told us so far."""

    step: int | None = None
    total: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    result: dict[str, Any] | None = None


class JobProcess:
    """The job, started through ``worker.guard`` so that its whole tree dies with the agent.

    Only this object holds the write end of the guard's pipe: closing it (``kill``, or the agent
    dying) makes the guard SIGKILL every process of the job.
    """

    def __init__(self, files: JobFiles, argv: list[str], *, env: dict[str, str], cwd: Path) -> None:
        self.files = files
        self._log = files.log.open("ab")
        lifeline, self._lifeline = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "worker.guard", str(lifeline), "--", *argv],
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                pass_fds=(lifeline,),
                start_new_session=True,  # the agent's own signals (a ^C in a notebook) stay ours
            )
        finally:
            os.close(lifeline)
        self._offset = 0
        self._partial = bytearray()  # the unfinished last line
        self._skipped = 0  # bytes of an overlong line being skipped

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    def read_lines(self) -> list[bytes | Overlong]:
        """New complete lines of the progress channel (worker.messages decodes them).

        Read in bounded chunks, and a line longer than MAX_LINE_BYTES is skipped to its end
        and stands as an Overlong: a job writing without newlines cannot fill the agent's memory.
        """
        lines: list[bytes | Overlong] = []
        try:
            # Non-blocking, and regular files only: a job may have swapped the channel for a
            # FIFO (an open that never returns) or /dev/zero (a read that never ends).
            fd = os.open(self.files.progress, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:  # deleted by the job: nothing more to read
            return lines
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return lines
            fh.seek(self._offset)
            while chunk := fh.read(READ_CHUNK_BYTES):
                self._offset += len(chunk)
                self._split(chunk, lines)
        return lines

    def _split(self, chunk: bytes, lines: list[bytes | Overlong]) -> None:
        *ended, rest = chunk.split(b"\n")
        for piece in ended:
            self._extend(piece)
            if self._skipped:
                lines.append(Overlong(self._skipped))
            else:
                lines.append(bytes(self._partial))
            self._partial.clear()
            self._skipped = 0
        self._extend(rest)

    def _extend(self, piece: bytes) -> None:
        if self._skipped:
            self._skipped += len(piece)
            return
        self._partial += piece
        if len(self._partial) > MAX_LINE_BYTES:
            self._skipped = len(self._partial)
            self._partial.clear()

    def request_stop(self) -> None:
        """Ask for "checkpoint now and exit": the stop file, then SIGTERM, which the guard
        passes to every process in the job's group."""
        self.files.stop.touch()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGTERM)

    def kill(self) -> None:
        """Cut the guard's lifeline: it SIGKILLs the job's whole tree and exits."""
        if self._lifeline >= 0:
            os.close(self._lifeline)
            self._lifeline = -1

    def stop(self, *, grace: float) -> int:
        """request_stop, then SIGKILL after ``grace`` seconds; returns the exit code."""
        if self.poll() is None:
            self.request_stop()
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log.warning("job %s ignored SIGTERM for %.0fs: killing it", self.pid, grace)
                self.kill()
        return self.wait()

    def wait(self) -> int:
        code = self.proc.wait()
        self.kill()  # nothing of the job may linger once it has ended
        self._log.close()
        return code

    def log_tail(self) -> str:
        return read_tail(self.files.log)


def read_tail(path: Path) -> str:
    """The newest LOG_TAIL_BYTES of a log ("" when there is none yet)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - LOG_TAIL_BYTES))
            return fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def contract_env(
    files: JobFiles,
    *,
    experiment_id: int,
    attempt: int,
    resume_step: int | None,
    deadline: float | None,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The job's whole environment: the platform's ordinary variables of the agent's (an
    allowlist: worker/jobenv.py), then ``extra`` (the job's config.env and named secrets),
    then the contract's variables, which nothing overrides."""
    env = {**platform_environment(os.environ), **(extra or {})}
    env.update(
        {
            contract.ENV_EXPERIMENT_ID: str(experiment_id),
            contract.ENV_ATTEMPT: str(attempt),
            contract.ENV_CONFIG: str(files.config),
            contract.ENV_CHECKPOINT_DIR: str(files.checkpoints),
            contract.ENV_PROGRESS_FILE: str(files.progress),
            contract.ENV_STOP_FILE: str(files.stop),
            contract.ENV_OUTPUT_DIR: str(files.output),
            contract.ENV_INPUTS_DIR: str(files.inputs),
            "PYTHONUNBUFFERED": "1",
        }
    )
    for name in (contract.ENV_RESUME_DIR, contract.ENV_RESUME_STEP, contract.ENV_DEADLINE):
        env.pop(name, None)
    if resume_step is not None:
        env[contract.ENV_RESUME_DIR] = str(files.resume)
        env[contract.ENV_RESUME_STEP] = str(resume_step)
    if deadline is not None:
        env[contract.ENV_DEADLINE] = str(deadline)
    return env
