"""Resident memory of `baton up` (the supervisor, the API, the RQ worker and the embedded
Redis), idle and with N worker agents heartbeating.

Runs `python -m orchestrator up --workers 0` on a scratch data dir (SQLite, embedded Redis,
the control plane's own checkpoint store), lets it settle, and samples every process in its
tree for --seconds: the sum of VmRSS (shared pages counted in each process) and of Pss (shared
pages split between the processes that map them: what the tree really costs). Then starts
--agents `baton-worker --platform local` agents (outside the tree: they are the notebooks),
submits one long `demo.counter` experiment per agent (default 10 s heartbeats, a checkpoint
through the control plane every 10 s), waits until all run, and samples again.

    .venv/bin/python bench/control_plane_memory.py
    .venv/bin/python bench/control_plane_memory.py --agents 10 --seconds 60
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
MB = 1024 * 1024
LONG_JOB = {
    "kind": "demo.counter",
    "config": {"steps": 100_000, "step_seconds": 0.5, "checkpoint_every": 20},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def tree_of(pid: int) -> list[int]:
    tree, found, todo = children(), [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(tree.get(current, []))
    return found


def describe(pid: int) -> str:
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    words = [a.decode(errors="replace") for a in argv if a]
    if "serve" in words:
        return "api (baton serve)"
    if "rq-worker" in words:
        return "rq-worker"
    if "orchestrator.supervisor" in words or "up" in words:
        return "baton up (supervisor)"
    if "redis-server" in words[0]:
        return "redis-server (embedded)"
    return Path(words[0]).name if words else str(pid)


def memory(pid: int) -> tuple[int, int]:
    """(VmRSS, Pss) in bytes."""
    rss = pss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            pss = int(line.split()[1]) * 1024
    return rss, pss


def sample(root: int, seconds: float) -> dict[str, Any]:
    """Peak and mean of the tree's summed RSS and PSS over ``seconds`` (the embedded Redis is
    a child of `baton up`), with the breakdown at the peak."""
    totals: list[tuple[int, int]] = []
    peak: dict[str, tuple[int, int]] = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        parts: dict[str, tuple[int, int]] = {}
        for pid in tree_of(root):
            with contextlib.suppress(OSError):
                name = describe(pid)
                rss, pss = memory(pid)
                old = parts.get(name, (0, 0))
                parts[name] = (old[0] + rss, old[1] + pss)
        total = (sum(r for r, _ in parts.values()), sum(p for _, p in parts.values()))
        if not totals or total[0] > max(t[0] for t in totals):
            peak = parts
        totals.append(total)
        time.sleep(1)
    return {
        "rss_peak_mb": max(t[0] for t in totals) / MB,
        "rss_mean_mb": sum(t[0] for t in totals) / len(totals) / MB,
        "pss_peak_mb": max(t[1] for t in totals) / MB,
        "pss_mean_mb": sum(t[1] for t in totals) / len(totals) / MB,
        "at_peak": {name: {"rss_mb": r / MB, "pss_mb": p / MB} for name, (r, p) in peak.items()},
    }


@contextlib.contextmanager
def baton_up(data: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
        "PYTHONPATH": str(REPO),
        "BATON_DATA_DIR": str(data),
        "PYTHONUNBUFFERED": "1",
    }
    log = (data.parent / "up.log").open("wb")
    up = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "up", "--port", str(port), "--workers", "0"],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield up
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            for pid in reversed(tree_of(up.pid)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        log.close()


def wait_for(what: str, check: Any, timeout: float = 120) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(httpx.HTTPError):
            value = check()
            if value:
                return value
        time.sleep(0.5)
    raise RuntimeError(f"timed out waiting for {what}")


def bench(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="baton-memory-") as tmp:
        root = Path(tmp)
        data = root / "data"
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        agents: list[subprocess.Popen[bytes]] = []
        with baton_up(data, port) as up:
            wait_for("the API", lambda: httpx.get(f"{url}/healthz", timeout=1).is_success)
            time.sleep(args.settle)
            idle = sample(up.pid, args.seconds)
            env = {**os.environ, "PYTHONPATH": str(REPO), "BATON_DATA_DIR": str(data)}
            create = ["tokens", "create", "--local", "--name", "bench"]
            token = subprocess.run(
                [sys.executable, "-m", "orchestrator", *create],
                env=env,
                cwd=REPO,
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
            password = (data / "admin-password").read_text().strip()
            http = httpx.Client(base_url=url, timeout=30)
            login = http.post(
                "/auth/login", data={"username": "admin@baton.local", "password": password}
            )
            login.raise_for_status()
            http.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
            ids = []
            for n in range(args.agents):
                reply = http.post("/api/v1/experiments", json={**LONG_JOB, "name": f"long-{n}"})
                reply.raise_for_status()
                ids.append(reply.json()["id"])
            try:
                for n in range(args.agents):
                    agents.append(
                        subprocess.Popen(
                            [
                                sys.executable,
                                "-m",
                                "worker",
                                "--api",
                                url,
                                "--token",
                                token,
                                "--name",
                                f"agent-{n}",
                                "--work-dir",
                                str(root / f"agent-{n}"),
                                "--platform",
                                "local",
                            ],
                            env={**os.environ, "PYTHONPATH": str(REPO)},
                            cwd=REPO,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                        )
                    )

                def all_running() -> bool:
                    statuses = [http.get(f"/api/v1/experiments/{i}").json()["status"] for i in ids]
                    return all(s == "running" for s in statuses)

                wait_for(f"{args.agents} experiments to run", all_running)
                time.sleep(args.settle)
                busy = sample(up.pid, args.seconds)
                checkpoints = sum(1 for _ in (data / "checkpoints").glob("*/*/MANIFEST.json"))
            finally:
                for agent in agents:
                    agent.send_signal(signal.SIGINT)
                for agent in agents:
                    try:
                        agent.wait(30)
                    except subprocess.TimeoutExpired:
                        agent.kill()
                http.close()
    return {"agents": args.agents, "idle": idle, "busy": busy, "checkpoints_stored": checkpoints}


def show(label: str, result: dict[str, Any]) -> None:
    print(
        f"{label}: RSS sum peak {result['rss_peak_mb']:.0f} MB (mean {result['rss_mean_mb']:.0f}),"
        f" PSS sum peak {result['pss_peak_mb']:.0f} MB (mean {result['pss_mean_mb']:.0f})"
    )
    for name, values in sorted(result["at_peak"].items()):
        print(f"    {name:<24} RSS {values['rss_mb']:6.0f} MB   PSS {values['pss_mb']:6.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=30, help="sampling window per phase")
    parser.add_argument("--settle", type=float, default=10, help="wait before sampling")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    result = bench(args)
    show("baton up, idle", result["idle"])
    show(f"baton up, {result['agents']} agents heartbeating", result["busy"])
    print(f"  checkpoints uploaded through the control plane: {result['checkpoints_stored']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
