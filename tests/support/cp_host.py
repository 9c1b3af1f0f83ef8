"""The control plane on its own host: installed from the wheel, run as root in its namespace.

Its data dir (SQLite, checkpoints, bundles, Redis' socket) is inside a root-only (0700)
directory; Redis is a ``redis-server`` of its own listening only on a Unix socket there.
Its ``baton`` CLI (from the same venv) also plays the user's laptop: run as root in the
root namespace, it reaches the API over the test's own link.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.hosts import Host
from tests.support.stack import SECRET, Proc, wait_until

PORT = 8000  # the namespace is the control plane's own: no other server can hold a port
ADMIN = ("admin@example.com", "password123")


@dataclass
class ControlPlane:
    host: Host
    venv: Path
    private: Path  # root-only; holds the data dir
    logs: Path
    settings: dict[str, str] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host.address}:{PORT}"

    @property
    def data_dir(self) -> Path:
        return self.private / "data"

    @property
    def baton(self) -> Path:
        return self.venv / "bin" / "baton"

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "PATH": f"{self.venv / 'bin'}:/usr/bin:/bin",
            "HOME": str(self.private),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "BATON_ENV": "test",
            "BATON_SECRET_KEY": SECRET,
            "BATON_DATA_DIR": str(self.data_dir),
            "DATABASE_URL": f"sqlite:///{self.data_dir / 'baton.db'}",
            "REDIS_URL": f"unix://{self.private / 'redis.sock'}",
            "BATON_HEARTBEAT_SECONDS": "1",
            # Long enough for a heartbeat to survive a busy 2-core machine, short for a test.
            "BATON_LEASE_SECONDS": "6",
            "BATON_REAPER_SECONDS": "1",
            "BATON_RECONCILE_SECONDS": "2",
            **self.settings,
        }
        env.update(extra)
        return env

    def _spawn(self, name: str, argv: list[str | os.PathLike[str]]) -> Proc:
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                self.host.argv(argv),
                env=self.env(),
                cwd=self.private,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def cli(self, *args: str, input: str | None = None) -> str:
        """``baton ARGS`` on the control-plane host (admin commands that touch its DB)."""
        done = self.host.run(
            [self.baton, *args], env=self.env(), cwd=self.private, input=input, timeout=120
        )
        assert done.returncode == 0, f"baton {args[:2]}: {done.stderr[-3000:]}"
        return done.stdout

    def start(self) -> None:
        self.private.mkdir(mode=0o700)
        self.private.chmod(0o700)
        self.data_dir.mkdir()
        redis = self._spawn(
            "redis",
            [
                "redis-server",
                "--port",
                "0",
                "--unixsocket",
                self.private / "redis.sock",
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.private,
            ],
        )
        wait_until(
            lambda: (self.private / "redis.sock").exists() or not redis.alive(),
            timeout=20,
            what="redis-server's socket",
        )
        assert redis.alive(), redis.output()
        self.cli("db", "upgrade")
        api = self._spawn(
            "api",
            [
                self.baton,
                "serve",
                "--host",
                self.host.address,
                "--port",
                str(PORT),
                "--public-url",
                self.url,
            ],
        )

        def healthy() -> bool:
            assert api.alive(), f"API exited:\n{api.output()[-3000:]}"
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            return False

        wait_until(healthy, timeout=90, what="the control plane to answer /healthz")
        self._spawn("rq-worker", [self.baton, "rq-worker"])
        self.cli("users", "create", "--email", ADMIN[0], "--password", ADMIN[1], "--admin")

    def worker_token(self, name: str) -> str:
        return self.cli("tokens", "create", "--name", name).strip().splitlines()[-1]

    def client(self) -> httpx.Client:
        """An admin's HTTP session from the test (the root namespace, over its own link)."""
        http = httpx.Client(base_url=self.url, timeout=30)
        reply = http.post("/auth/login", data={"username": ADMIN[0], "password": ADMIN[1]})
        reply.raise_for_status()
        http.headers["Authorization"] = f"Bearer {reply.json()['access_token']}"
        return http

    def logs_text(self) -> str:
        return "\n".join(f"--- {p.name}\n{quiet(p.output())[-4000:]}" for p in self.procs)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop(timeout=10)


def quiet(log: str) -> str:
    """A log without its routine lines (requests that went fine, scheduled RQ jobs)."""
    routine = ("HTTP Request:", '" 200 OK', '" 204 No Content', "rq.worker", "Enqueued job")
    return "\n".join(line for line in log.splitlines() if not any(r in line for r in routine))


def experiment(http: httpx.Client, experiment_id: int) -> dict[str, Any]:
    reply = http.get(f"/api/v1/experiments/{experiment_id}")
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body
