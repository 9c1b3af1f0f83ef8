"""A worker told its platform sends nothing to the EC2 metadata address (169.254.169.254).

The worker runs in a network namespace of this test where 169.254.169.254 is an address on a
dummy interface with a TCP listener the test owns; a veth pair (198.19.255.0/30, in the
benchmark range, nothing routes off the machine) reaches the real `baton serve` in the root
namespace. With ``--platform local`` (and no AWS_EC2_METADATA_DISABLED) the worker registers
and runs a job and the listener sees no connection; the same worker without ``--platform``
does connect, which shows the listener would have seen one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.api import create_user, create_worker_token, make_settings
from tests.support.stack import Proc, Stack, free_port, stack_env, wait_until
from worker.platforms.probe import DEFAULT_IMDS_URL, IMDS_DISABLED_ENV, IMDS_URL_ENV

IMDS_ADDRESS = DEFAULT_IMDS_URL.removeprefix("http://")
HOST_SIDE, NS_SIDE = "198.19.255.1", "198.19.255.2"  # one /30; the lock keeps runs apart
LOCK = Path("/tmp/baton-imds-netns.lock")
PREFIX = "baton-imds-"
LISTENER = f"""
import socket, sys
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("{IMDS_ADDRESS}", 80))
server.listen(16)
print("ready", flush=True)
while True:
    conn, peer = server.accept()
    print("connection from", peer[0], flush=True)
    conn.close()
"""


def _ip(*args: str, netns: str | None = None) -> None:
    argv = ["ip", "netns", "exec", netns, "ip", *args] if netns else ["ip", *args]
    subprocess.run(argv, check=True, capture_output=True, text=True)


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (a network namespace)"
    if shutil.which("ip") is None:
        return "needs iproute2's `ip`"
    probe = f"{PREFIX}probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` fails here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True)
    return None


def _kill_all(netns: str) -> None:
    for _ in range(20):
        pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True)
        if not pids.stdout.split():
            return
        for pid in pids.stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), 9)
        time.sleep(0.1)


def _add_imds_address(netns: str) -> None:
    """169.254.169.254 on a dummy interface; on kernels without the dummy driver, on ``lo``
    (either way a local address of the namespace, where the listener takes connections)."""
    made = subprocess.run(
        ["ip", "netns", "exec", netns, "ip", "link", "add", "imds0", "type", "dummy"],
        capture_output=True,
        text=True,
    )
    device = "imds0" if made.returncode == 0 else "lo"
    _ip("addr", "add", f"{IMDS_ADDRESS}/32", "dev", device, netns=netns)
    _ip("link", "set", device, "up", netns=netns)


@dataclass
class Net:
    netns: str

    def argv(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv]


@pytest.fixture
def net() -> Iterator[Net]:
    if reason := _unavailable():
        pytest.skip(reason)
    LOCK.touch(exist_ok=True)
    with LOCK.open() as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one run at a time owns the /30
        netns, host_dev = f"{PREFIX}{os.getpid()}", f"bim{os.getpid()}"
        for stale in subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True
        ).stdout.splitlines():
            if stale.startswith(PREFIX):
                _kill_all(stale.split()[0])
                subprocess.run(["ip", "netns", "delete", stale.split()[0]], capture_output=True)
        _ip("netns", "add", netns)
        try:
            _ip("link", "set", "lo", "up", netns=netns)
            _add_imds_address(netns)
            _ip("link", "add", host_dev, "type", "veth", "peer", "name", "eth0", "netns", netns)
            _ip("addr", "add", f"{HOST_SIDE}/30", "dev", host_dev)
            _ip("link", "set", host_dev, "up")
            _ip("addr", "add", f"{NS_SIDE}/30", "dev", "eth0", netns=netns)
            _ip("link", "set", "eth0", "up", netns=netns)
            yield Net(netns)
        finally:
            _kill_all(netns)
            subprocess.run(["ip", "link", "delete", host_dev], capture_output=True)
            subprocess.run(["ip", "netns", "delete", netns], capture_output=True)


def _connections(listener: Proc) -> list[str]:
    return [line for line in listener.output().splitlines() if line.startswith("connection")]


def test_platform_local_never_touches_the_metadata_address(
    net: Net, redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    db = f"sqlite:///{tmp_path / 'baton.db'}"
    env = stack_env(database_url=db, redis_url=redis_url, data_dir=tmp_path / "data")
    for name in (IMDS_DISABLED_ENV, IMDS_URL_ENV):
        env.pop(name, None)  # nothing but --platform keeps this worker off the address
    stack = Stack(env=env, root=tmp_path, port=port, host=HOST_SIDE)
    settings = make_settings(database_url=db, redis_url=redis_url, data_dir=tmp_path / "data")
    create_user(settings, "u@example.com")
    token = create_worker_token(settings)
    try:
        listener = stack._spawn("imds-listener", net.argv([sys.executable, "-u", "-c", LISTENER]))
        wait_until(lambda: "ready" in listener.output(), timeout=20, what="the listener")
        api = stack._spawn(
            "api",
            [
                sys.executable,
                "-m",
                "orchestrator",
                "serve",
                "--host",
                HOST_SIDE,
                "--port",
                str(port),
            ],
        )
        url = stack.url

        def healthy() -> bool:
            assert api.alive(), api.output()[-3000:]
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
            return False

        wait_until(healthy, timeout=60, what="the API")
        http = httpx.Client(base_url=url, timeout=30)
        login = http.post(
            "/auth/login", data={"username": "u@example.com", "password": "password123"}
        )
        http.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        spec = {"name": "quiet", "kind": "command", "config": {"command": "true"}}
        experiment = http.post("/api/v1/experiments", json=spec).json()["id"]

        def worker(name: str, *extra: str) -> Proc:
            return stack.start_worker(name, token, "--claim-wait", "2", *extra, via=net.argv([]))

        told = worker("told", "--platform", "local", "--max-jobs", "1")
        assert told.popen.wait(timeout=90) == 0, told.output()[-3000:]
        body = http.get(f"/api/v1/experiments/{experiment}").json()
        assert body["status"] == "succeeded", body
        assert _connections(listener) == [], (
            "a worker with --platform local probed the IMDS address"
        )

        # Control: the same worker left to detect its platform does reach the listener.
        # (naming the real address keeps the harness from adding ``--platform local``)
        detecting = worker("detecting", "--imds-url", DEFAULT_IMDS_URL)
        wait_until(lambda: _connections(listener), timeout=60, what="the detecting worker's probe")
        assert _connections(listener)[0].endswith(IMDS_ADDRESS), _connections(listener)
        detecting.stop()
    finally:
        stack.close()
