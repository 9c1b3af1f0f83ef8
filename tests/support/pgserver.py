"""A PostgreSQL server of a test's own, which it may stop and start (the shared one serves
other tests): initdb into a temp dir, pg_ctl on a free port, from Debian's packages."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.stack import free_port


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


@dataclass
class PostgresServer:
    bin_dir: Path
    root: Path
    port: int
    as_user: list[str]  # postgres refuses to run as root: run it as the postgres user then

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/baton"

    def run_tool(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self.as_user, str(self.bin_dir / tool), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr or done.stdout}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.run_tool(
            "pg_ctl", "-D", str(self.root / "data"), "-o", options, "-l", str(self.root / "log"),
            "-w", "start",
        )  # fmt: skip

    def stop(self) -> None:
        """A fast shutdown: open connections are cut, as when the server goes away."""
        self.run_tool("pg_ctl", "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer | None]:
    """A fresh server with an empty ``baton`` database, stopped and removed afterwards; None
    when the PostgreSQL binaries are not installed."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        yield None
        return
    # Not under pytest's tmp dir: as root that is private, and postgres runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="baton-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    server = PostgresServer(bin_dir=bin_dir, root=root, port=free_port(), as_user=as_user)
    server.run_tool(
        "initdb", "-D", str(root / "data"), "-A", "trust", "-U", "postgres", "--no-sync"
    )
    server.start()
    try:
        server.run_tool(
            "createdb", "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres", "baton"
        )
        yield server
    finally:
        with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
