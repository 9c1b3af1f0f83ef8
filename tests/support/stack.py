"""Real processes for end-to-end tests: `baton serve`, `baton rq-worker`, `baton-worker`."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

SECRET = "test-secret-" + "x" * 40


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Callable[[], Any], *, timeout: float, interval: float = 0.1, what: str = "condition"
) -> Any:
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it has stopped running all the same.
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(sig)

    def stop(self, timeout: float = 20) -> int | None:
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        return self.popen.wait(5)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def stack_env(*, database_url: str, redis_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "BATON_ENV": "test",
        "BATON_SECRET_KEY": SECRET,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "BATON_DATA_DIR": str(data_dir),
        "BATON_HEARTBEAT_SECONDS": "1",
        "BATON_LEASE_SECONDS": "4",
        "BATON_REAPER_SECONDS": "1",
        "BATON_RECONCILE_SECONDS": "2",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


@dataclass
class Stack:
    """A running control plane plus any number of worker agents, torn down by ``close``."""

    env: dict[str, str]
    root: Path
    port: int = field(default_factory=free_port)
    procs: list[Proc] = field(default_factory=list)
    api: Proc | None = None
    host: str = "127.0.0.1"  # where the API listens: an address a worker's namespace reaches

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        log = self.root / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                argv,
                env=env or self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def start_api(self) -> Proc:
        self.api = self._spawn(
            f"api-{len(self.procs)}",
            [
                sys.executable,
                "-m",
                "orchestrator",
                "serve",
                "--host",
                self.host,
                "--port",
                str(self.port),
                # Where workers reach it, unless the test names a public URL of its own.
                *([] if "BATON_PUBLIC_URL" in self.env else ["--public-url", self.url]),
            ],
        )
        api = self.api

        def healthy() -> bool:
            assert api.alive(), f"API exited:\n{api.output()[-3000:]}"
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            return False

        wait_until(healthy, timeout=60, what="the API to answer /healthz")
        return api

    def start_rq_worker(self) -> Proc:
        return self._spawn("rq-worker", [sys.executable, "-m", "orchestrator", "rq-worker"])

    def start_worker(
        self,
        name: str,
        token: str,
        *extra: str,
        env: dict[str, str] | None = None,
        via: Sequence[str] = (),
    ) -> Proc:
        """A `baton-worker`; ``via`` runs it through a wrapper (e.g. into a network namespace)."""
        return self._spawn(
            name,
            [
                *via,
                sys.executable,
                "-m",
                "worker",
                "--api",
                self.url,
                "--token",
                token,
                "--name",
                name,
                "--work-dir",
                str(self.root / name),
                "--claim-wait",
                "5",
                "--kill-grace",
                "10",
                *extra,
            ],
            env=env,
        )

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
