"""Attempt directories: fresh for every lease, never reused, swept once their attempt is dead.

Layout under the agent's work dir: ``cp-<control plane id>/<experiment>-<attempt>-<lease>/``,
where ``<lease>`` is a digest of the lease token; what a job writes to ``BATON_OUTPUT_DIR`` is
meant to outlive it and goes to ``outputs/`` under the same name, which the sweep leaves be.
A worker whose disk served another control plane (or this one before its database was reset)
sees only directories it cannot mistake for the attempt at hand, and ``sweep`` deletes them:
a dead attempt's files are never replayed or uploaded, since its checkpoints already went to
the control plane's store.

Several agents may share one work dir (two GPUs, two agents): each holds an exclusive
``flock`` on its live attempt's ``.lock`` file, and the sweep leaves locked directories alone.
The lock dies with the agent's process, so a SIGKILLed agent's directory is swept next time.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import time
from pathlib import Path

log = logging.getLogger(__name__)

LOCK = ".lock"
# A directory without its lock is being made right now, unless it is older than this.
UNLOCKED_GRACE_SECONDS = 60.0
_CONTROL_PLANE = re.compile(r"[A-Za-z0-9-]{1,64}")
# The layout before attempt directories were keyed by control plane and lease.
_LEGACY = re.compile(r"exp-\d+")


class AttemptDir:
    """A fresh directory for one attempt, locked for as long as the attempt lives."""

    def __init__(self, path: Path, *, output: Path) -> None:
        path.mkdir(parents=True, exist_ok=False)  # a lease's directory is made exactly once
        self.path = path
        self.output = output
        self._lock_fd: int | None = os.open(path / LOCK, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


class WorkDirs:
    def __init__(self, root: Path) -> None:
        self.root = root

    def attempt(
        self, *, control_plane: str, experiment_id: int, attempt: int, lease_token: str
    ) -> AttemptDir:
        if not _CONTROL_PLANE.fullmatch(control_plane):
            raise ValueError(f"not a control plane id: {control_plane!r}")
        lease = hashlib.sha256(lease_token.encode()).hexdigest()[:16]
        name = Path(f"cp-{control_plane}") / f"{experiment_id}-{attempt}-{lease}"
        return AttemptDir(self.root / name, output=self.root / "outputs" / name)

    def sweep(self) -> list[Path]:
        """Delete the directories of attempts no live agent holds; returns what went."""
        removed = [path for path in self._candidates() if self._remove_if_dead(path)]
        for path in removed:
            log.info("removed the leftovers of a dead attempt: %s", path)
        return removed

    def _candidates(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.iterdir() if p.is_dir() and _LEGACY.fullmatch(p.name)]
        for plane in self.root.glob("cp-*"):
            if plane.is_dir():
                found.extend(p for p in plane.iterdir() if p.is_dir())
        return found

    @staticmethod
    def _remove_if_dead(path: Path) -> bool:
        lock = path / LOCK
        if not lock.exists():  # legacy layout, one that never got its lock, or one being made
            if time.time() - path.stat().st_mtime < UNLOCKED_GRACE_SECONDS:
                return False
            shutil.rmtree(path, ignore_errors=True)
            return True
        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live agent's attempt
        else:
            shutil.rmtree(path, ignore_errors=True)
            return True
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
