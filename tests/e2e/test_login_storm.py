"""A storm of wrong-password logins must not freeze the API nor cost a running job its lease.

Real `baton serve` on the default SQLite setup, real Redis, a real `baton-worker` running a
demo.counter job. Twenty logins with a wrong password arrive at once while a poller asks
`/healthz` every 50 ms and a reader watches the attempt's heartbeats in the database file.
"""

from __future__ import annotations

import sqlite3
import statistics
import threading
import time
from collections.abc import Callable
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import httpx

from tests.e2e.conftest import ADMIN, Baton
from tests.support.stack import wait_until
from worker.jobs.counter import expected_digest

STORM = 20
ACCOUNT_FAILURES = 5  # BATON_LOGIN_ACCOUNT_FAILURES for this stack
LEASE_SECONDS = 4.0  # tests.support.stack.stack_env
HEALTHZ_TIMEOUT = 5.0


class HealthPoller(threading.Thread):
    """Asks /healthz every ~50 ms; a timeout counts as a latency of HEALTHZ_TIMEOUT."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.latencies: list[float] = []
        self.halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=HEALTHZ_TIMEOUT) as http:
            while not self.halt.is_set():
                started = time.perf_counter()
                try:
                    ok = http.get("/healthz").status_code == 200
                except httpx.HTTPError:
                    ok = False
                took = time.perf_counter() - started
                self.latencies.append(took if ok else HEALTHZ_TIMEOUT)
                self.halt.wait(max(0.0, 0.05 - took))

    def p99(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


class HeartbeatWatcher(threading.Thread):
    """Reads the attempt's heartbeat_at straight from the database file (read-only, WAL)."""

    def __init__(self, db_path: Path, experiment_id: int) -> None:
        super().__init__(daemon=True)
        self.db_path = db_path
        self.experiment_id = experiment_id
        self.seen: list[datetime] = []
        self.halt = threading.Event()

    def run(self) -> None:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=1)
        try:
            while not self.halt.is_set():
                try:
                    rows = conn.execute(
                        "SELECT heartbeat_at FROM attempt WHERE experiment_id = ?",
                        (self.experiment_id,),
                    ).fetchall()
                except sqlite3.OperationalError:
                    rows = []
                for (value,) in rows:
                    stamp = datetime.fromisoformat(str(value))
                    if not self.seen or stamp != self.seen[-1]:
                        self.seen.append(stamp)
                self.halt.wait(0.1)
        finally:
            conn.close()

    def largest_gap(self) -> float:
        stamps = sorted(set(self.seen))
        return max((b - a).total_seconds() for a, b in pairwise(stamps))


def _wrong_logins(url: str, clients: list[httpx.Client]) -> list[httpx.Response]:
    """One wrong-password login per client, all released at once."""
    start = threading.Barrier(len(clients))
    replies: list[httpx.Response | Exception] = [RuntimeError("not run")] * len(clients)

    def attempt(n: int) -> None:
        start.wait()
        try:
            replies[n] = clients[n].post(
                "/auth/login", data={"username": ADMIN[0], "password": f"wrong-{n}"}
            )
        except httpx.HTTPError as exc:
            replies[n] = exc

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    failures = [r for r in replies if isinstance(r, Exception)]
    assert not failures, f"logins that got no answer: {failures}"
    return [r for r in replies if isinstance(r, httpx.Response)]


def _connected_clients(url: str) -> list[httpx.Client]:
    """Clients made and connected beforehand: the storm is the logins, not this process
    building 20 clients (CPU and GIL the poller beside them would be timed against)."""
    clients = [httpx.Client(base_url=url, timeout=60) for _ in range(STORM)]
    for client in clients:
        client.get("/healthz").raise_for_status()
    return clients


def test_login_storm_leaves_health_and_the_running_job_alone(
    baton_factory: Callable[..., Baton], tmp_path: Path
) -> None:
    baton = baton_factory(BATON_LOGIN_ACCOUNT_FAILURES=str(ACCOUNT_FAILURES))
    steps = 60
    experiment_id = baton.submit(
        name="through-the-storm",
        kind="demo.counter",
        config={"steps": steps, "step_seconds": 0.25, "checkpoint_every": 10},
    )
    baton.start_worker("worker-a", "--platform", "local")
    wait_until(
        lambda: (baton.get(experiment_id)["attempts"] or [{}])[0].get("progress_step") or 0,
        timeout=60,
        what="the job to make progress",
    )
    watcher = HeartbeatWatcher(tmp_path / "baton.db", experiment_id)
    watcher.start()
    clients = _connected_clients(baton.stack.url)
    poller = HealthPoller(baton.stack.url)
    poller.start()
    time.sleep(1)  # a baseline before the storm

    storm_started = time.monotonic()
    try:
        replies = _wrong_logins(baton.stack.url, clients)
    finally:
        for client in clients:
            client.close()
    storm_seconds = time.monotonic() - storm_started
    time.sleep(1)  # and the tail after it
    poller.halt.set()
    poller.join(10)

    statuses = sorted(r.status_code for r in replies)
    # Each account gets ACCOUNT_FAILURES tries a window; the rest are turned away unhashed.
    assert statuses == [401] * ACCOUNT_FAILURES + [429] * (STORM - ACCOUNT_FAILURES), statuses
    for reply in replies:
        if reply.status_code == 429:
            assert int(reply.headers["Retry-After"]) > 0, reply.headers
            assert "too many" in reply.json()["detail"], reply.text
    assert len(poller.latencies) >= 20, poller.latencies
    assert poller.p99() < 0.2, (
        f"/healthz p99 {poller.p99() * 1000:.0f} ms over {len(poller.latencies)} probes "
        f"(median {statistics.median(poller.latencies) * 1000:.0f} ms, "
        f"storm took {storm_seconds:.1f} s)"
    )

    body = baton.wait_status(experiment_id, "succeeded", "failed", "lost", timeout=120)
    watcher.halt.set()
    watcher.join(10)
    assert body["status"] == "succeeded", body
    assert body["attempt_count"] == 1
    assert [a["outcome"] for a in body["attempts"]] == ["succeeded"]
    assert body["result"]["digest"] == expected_digest(steps)
    # The heartbeats kept coming through the storm: never a gap as long as a lease.
    assert len(watcher.seen) >= 3, watcher.seen
    assert watcher.largest_gap() < LEASE_SECONDS, watcher.seen
