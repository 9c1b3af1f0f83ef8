"""`python -m worker.guard FD -- ARGV...`: run a job so that no part of it outlives the agent.

The agent starts every job through this small process. It holds the read end of a pipe whose
write end only the agent has: when the agent dies (SIGKILL, OOM, a notebook cell interrupted)
or deliberately kills the job, the pipe reads EOF and the guard kills the job's whole tree.
A parent-death signal alone is not enough: it reaches only the direct child, so a `command`
job's `/bin/sh` died while the `python train.py` under it ran on. The guard is a child
subreaper on Linux, so descendants that left the job's process group (a daemonised helper,
`setsid`) are re-parented to it and killed too.

Signals the agent sends the guard (SIGTERM, SIGINT, SIGHUP) are passed to the job's process
group, so "checkpoint now and exit" reaches every process of the job, and the guard waits for
all of them (not only its child: a shell dies of SIGTERM before its program has checkpointed)
before it sweeps the tree. The guard exits with the
job's status, re-raising the signal that killed it, so the agent sees what it would have seen
running the job directly.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# After the job's tree has been told to die, how long to keep sweeping for stragglers.
SWEEP_SECONDS = 2.0


def _prctl(option: int, value: int) -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(option, value)


def _job_dies_with_guard() -> None:
    """In the job before exec: if the guard itself is killed, the job's leader goes too."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc; elsewhere only the process group is swept)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found.extend(int(child) for child in task.read_text().split())
    return found


def _reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def kill_tree(job_group: int) -> None:
    """SIGKILL the job's process group and every process re-parented to this guard."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(job_group, signal.SIGKILL)
    deadline = time.monotonic() + SWEEP_SECONDS
    while time.monotonic() < deadline:
        _reap()
        children = _children(os.getpid())
        if not children:
            return
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        time.sleep(0.02)


def _watch_agent(fd: int, job_group: int) -> None:
    """Block until the agent's end of the pipe closes, then take the whole job down."""
    with contextlib.suppress(OSError):
        while os.read(fd, 64):
            pass
    kill_tree(job_group)
    os._exit(128 + signal.SIGKILL)


def wait_group(job_group: int) -> None:
    """Until no process of the job's group is left (reaping those re-parented here).

    A `command` job's `/bin/sh -c` dies of the forwarded SIGTERM at once, while the program
    under it is still writing its checkpoint: the job has ended only when its group has. If it
    takes too long, the agent cuts the lifeline and the watcher thread kills the tree.
    """
    while True:
        _reap()
        try:
            os.killpg(job_group, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.02)


def _exit_like(status: int) -> None:
    if status < 0:  # killed by a signal: die of the same one
        signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
    sys.exit(status if status >= 0 else 128 - status)


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        sys.exit("usage: python -m worker.guard FD -- ARGV...")
    fd, command = int(argv[0]), argv[2:]
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    job = subprocess.Popen(command, start_new_session=True, preexec_fn=_job_dies_with_guard)

    asked_to_stop = threading.Event()

    def forward(signum: int, _frame: object) -> None:
        asked_to_stop.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(job.pid, signum)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    threading.Thread(target=_watch_agent, args=(fd, job.pid), daemon=True).start()
    status = job.wait()
    if asked_to_stop.is_set():
        wait_group(job.pid)
    kill_tree(job.pid)  # whatever the job left behind does not outlive it either
    _exit_like(status)


if __name__ == "__main__":
    main(sys.argv[1:])
